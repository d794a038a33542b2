package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// intersperse moves the flags that follow a command's arguments in front of
// them, so that `zkchat read bob --follow` works as users expect: urfave/cli
// v2 stops parsing flags at the first argument; and the global flags given
// after the command (`zkchat users --zookeeper h:2181`) in front of the
// command, where urfave/cli v2 takes them. "--" ends flag moving; the words
// after it stay arguments even if they start with "-".
func intersperse(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	takesValue := map[string]bool{}
	note := func(flags []cli.Flag) {
		for _, f := range flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				takesValue[n] = !isBool
			}
		}
	}
	note(app.Flags)
	global := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			global[n] = true
		}
	}
	out := []string{args[0]}
	i := 1
	// Global flags before the command stay where they are.
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		out = append(out, args[i])
		if name := flagName(args[i]); takesValue[name] && !strings.Contains(args[i], "=") && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
		i++
	}
	if i >= len(args) {
		return out
	}
	cmd := app.Command(args[i])
	out = append(out, args[i])
	i++
	if cmd == nil {
		return append(out, args[i:]...)
	}
	note(cmd.Flags)
	own := map[string]bool{}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			own[n] = true
		}
	}
	var globals, flags, positional []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name := flagName(a)
		to := &flags
		if global[name] && !own[name] {
			to = &globals
		}
		*to = append(*to, a)
		if takesValue[name] && !strings.Contains(a, "=") && i+1 < len(args) {
			i++
			*to = append(*to, args[i])
		}
	}
	// out ends with the command: the globals go before it.
	out = append(append(out[:len(out)-1:len(out)-1], globals...), cmd.Name)
	return append(append(out, flags...), positional...)
}

func flagName(a string) string {
	name := strings.TrimLeft(a, "-")
	if j := strings.IndexByte(name, '='); j >= 0 {
		name = name[:j]
	}
	return name
}
