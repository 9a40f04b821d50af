package main

import (
	"testing"
)

// A renewed token is saved only over the token the process replaced, for
// the same server and user: a logout, a login as someone else and a token
// another command renewed meanwhile all stay as they are.
func TestTokenSaverKeepsOtherChanges(t *testing.T) {
	start := clientConfig{Server: "https://a.example:8443", User: "alice", Token: "t0"}
	for _, tc := range []struct {
		name  string
		disk  clientConfig
		saved bool
	}{
		{"unchanged", start, true},
		{"logged out", clientConfig{Server: start.Server, User: start.User}, false},
		{"renewed by another command", clientConfig{Server: start.Server, User: start.User, Token: "t9"}, false},
		{"another user", clientConfig{Server: start.Server, User: "bob", Token: "t0"}, false},
		{"another server", clientConfig{Server: "https://b.example:8443", User: start.User, Token: "t0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := tc.disk
			if err := saveConfig(dir, &disk); err != nil {
				t.Fatal(err)
			}
			ts := &tokenSaver{dir: dir, server: start.Server, user: start.User, known: start.Token}
			saved, err := ts.save("t1", 42)
			if err != nil || saved != tc.saved {
				t.Fatalf("save: %v, %v; want %v", saved, err, tc.saved)
			}
			got, err := loadConfigIn(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.disk
			if tc.saved {
				want.Token, want.TokenExpires = "t1", 42
			}
			if *got != want {
				t.Fatalf("saved config %+v, want %+v", *got, want)
			}
		})
	}
	// A second renewal follows the first.
	dir := t.TempDir()
	cfg := start
	saveConfig(dir, &cfg)
	ts := &tokenSaver{dir: dir, server: cfg.Server, user: cfg.User, known: cfg.Token}
	ts.save("t1", 1)
	if saved, err := ts.save("t2", 2); !saved || err != nil {
		t.Fatalf("second renewal: %v, %v", saved, err)
	}
}
