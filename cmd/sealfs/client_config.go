package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// clientConfig is what a device remembers about its account. It holds
// nothing that decrypts data: no password, no master or derived key. The
// session token only lets the server recognise the device; every command
// still needs the password to open the vault.
type clientConfig struct {
	Server       string `json:"server"`
	User         string `json:"user"`
	Fingerprint  string `json:"fingerprint,omitempty"` // pinned certificate
	CACert       string `json:"ca_cert,omitempty"`     // absolute path of a CA file
	Token        string `json:"token,omitempty"`
	TokenExpires int64  `json:"token_expires,omitempty"` // Unix seconds
}

// configFileName is the file inside the config directory.
const configFileName = "config.json"

// configDir returns where the client keeps its state: $SEALFS_CONFIG_DIR,
// else $XDG_CONFIG_HOME/sealfs, else ~/.config/sealfs.
func configDir() (string, error) {
	if d := os.Getenv("SEALFS_CONFIG_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "sealfs"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a config directory (%v); set SEALFS_CONFIG_DIR", err)
	}
	return filepath.Join(home, ".config", "sealfs"), nil
}

// errNotSetUp says the device has no account yet.
var errNotSetUp = errors.New("this device is not set up: run 'sealfs init URL --user NAME --invite CODE' for a new account, or 'sealfs login URL --user NAME' for an existing one")

// loadConfig reads the device's configuration.
func loadConfig() (*clientConfig, string, error) {
	dir, err := configDir()
	if err != nil {
		return nil, "", err
	}
	cfg, err := loadConfigIn(dir)
	return cfg, dir, err
}

// loadConfigIn reads the configuration kept in dir.
func loadConfigIn(dir string) (*clientConfig, error) {
	b, err := os.ReadFile(filepath.Join(dir, configFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotSetUp
	}
	if err != nil {
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	cfg := new(clientConfig)
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("the configuration %s is damaged (%v): fix it, or remove it and run 'sealfs login' again", filepath.Join(dir, configFileName), err)
	}
	if cfg.Server == "" || cfg.User == "" {
		return nil, errNotSetUp
	}
	return cfg, nil
}

// tokenSaver saves the session token a long-running command (a mount, a
// big put) renewed by logging in again, for the device's next commands.
// The configuration may have changed since the command read it: a
// logout must stay a logout, and a login as someone else or a token
// another command renewed must not be overwritten with this process's
// view. So the new token is written only over the token this process
// last knew, for the same server and user.
type tokenSaver struct {
	mu           sync.Mutex
	dir          string
	server, user string // whose session it is
	known        string // the token this process last saw saved
}

// save records tok, valid until exp, if the saved configuration still
// holds the token this process replaced. It reports whether it did.
func (t *tokenSaver) save(tok string, exp int64) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.known
	t.known = tok
	disk, err := loadConfigIn(t.dir)
	if err != nil {
		if errors.Is(err, errNotSetUp) {
			return false, nil // removed or reset: nothing to renew
		}
		return false, err
	}
	if disk.Server != t.server || disk.User != t.user || disk.Token == "" || disk.Token != prev {
		return false, nil
	}
	disk.Token, disk.TokenExpires = tok, exp
	return true, saveConfig(t.dir, disk)
}

// saveConfig writes the configuration atomically, readable by its owner
// only (the session token is a credential).
func saveConfig(dir string, cfg *clientConfig) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the config directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, configFileName)
	if err := writeFileAtomic(path, append(b, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// resumePath is the state file of an upload of local file src to remote
// path dst for this account: the same command run again finds it.
func resumePath(dir string, cfg *clientConfig, dst, src string) string {
	h := sha256.New()
	for _, s := range []string{cfg.Server, cfg.User, dst, src} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return filepath.Join(dir, "resume", hex.EncodeToString(h.Sum(nil))+".json")
}
