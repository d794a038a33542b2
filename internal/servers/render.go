package servers

import (
	"bytes"
	"fmt"
	"os"
	"text/template"
)

// Render executes the text/template src with data (a missing key is an
// error) and writes the result to dst, atomically.
func Render(src, dst string, data map[string]any) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	t, err := template.New(src).Option("missingkey=error").Parse(string(b))
	if err != nil {
		return fmt.Errorf("template %s: %w", src, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return fmt.Errorf("template %s: %w", src, err)
	}
	return writeFileAtomic(dst, out.Bytes(), 0o644)
}

// copyFile copies src to dst (configs that need no values).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, b, 0o644)
}
