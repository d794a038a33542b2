package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

func TestSignAndCheck(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	at := time.UnixMilli(1765000000123)
	sig, ms := Sign(priv, "bob", "alice", at, "hi ☺")
	cases := []struct {
		name           string
		pub            ed25519.PublicKey
		from, to, text string
		sig, ms        []byte
		want           Trust
	}{
		{"good", pub, "bob", "alice", "hi ☺", sig, ms, Verified},
		{"unsigned", pub, "bob", "alice", "hi ☺", nil, nil, Unsigned},
		{"no key", nil, "bob", "alice", "hi ☺", sig, ms, NoKey},
		{"other key", other, "bob", "alice", "hi ☺", sig, ms, Forged},
		{"sender changed", pub, "carol", "alice", "hi ☺", sig, ms, Forged},
		{"copied to another receiver", pub, "bob", "dave", "hi ☺", sig, ms, Forged},
		{"text changed", pub, "bob", "alice", "hi", sig, ms, Forged},
		{"time changed", pub, "bob", "alice", "hi ☺", sig, []byte("1765000000124"), Forged},
		{"bad time", pub, "bob", "alice", "hi ☺", sig, []byte("x"), Forged},
		{"short signature", pub, "bob", "alice", "hi ☺", sig[:10], ms, Forged},
		{"signature only", pub, "bob", "alice", "hi ☺", sig, nil, Forged},
	}
	for _, c := range cases {
		if got := CheckSignature(c.pub, c.from, c.to, c.sig, c.ms, c.text); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRegistryData(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	r, err := ParseRegistryData([]byte(`{"registered_at":"2026-12-07T10:00:00Z","note":"kept"}`))
	if err != nil || r.RegisteredAt == "" || r.Key() != nil {
		t.Fatalf("parse: %+v, %v", r, err)
	}
	r.PublicKey = EncodePublicKey(pub)
	back, err := ParseRegistryData(r.Marshal())
	if err != nil || !back.Key().Equal(pub) || back.Other["note"] != "kept" {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for _, empty := range []string{"", " \n"} {
		if r, err := ParseRegistryData([]byte(empty)); err != nil || r.Key() != nil {
			t.Errorf("%q: %+v, %v", empty, r, err)
		}
	}
	if _, err := ParseRegistryData([]byte("registered")); err == nil {
		t.Error("non-JSON registry data accepted")
	}
	if r, _ := ParseRegistryData([]byte(`{"public_key":"AAAA"}`)); r.Key() != nil {
		t.Error("a 3-byte key accepted")
	}
}

func TestOnlinePublicKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := OnlinePublicKey([]byte(`{"host":"h","pid":1,"public_key":"` + EncodePublicKey(pub) + `"}`))
	if err != nil || !k.Equal(pub) {
		t.Fatalf("%v, %v", k, err)
	}
	for _, none := range []string{`{"host":"h"}`, ``, `-1`, `{"public_key":7}`} {
		if k, err := OnlinePublicKey([]byte(none)); k != nil || err != nil {
			t.Errorf("%q: %v, %v", none, k, err)
		}
	}
	if _, err := OnlinePublicKey([]byte(`{"public_key":"` + strings.Repeat("A", 40) + `"}`)); err == nil {
		t.Error("malformed key accepted")
	}
}

func BenchmarkSign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	text := strings.Repeat("x", 100)
	at := time.Now()
	for b.Loop() {
		Sign(priv, "bob", "alice", at, text)
	}
}

func BenchmarkCheckSignature(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	text := strings.Repeat("x", 100)
	sig, ms := Sign(priv, "bob", "alice", time.Now(), text)
	for b.Loop() {
		if CheckSignature(pub, "bob", "alice", sig, ms, text) != Verified {
			b.Fatal("not verified")
		}
	}
}
