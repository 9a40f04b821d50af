package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/vault"
)

func init() {
	commands["init"] = command{"create an account with an invite code and set up this device", runInit}
	commands["login"] = command{"set up this device for an existing account", runLogin}
	commands["logout"] = command{"end this device's session", runLogout}
	commands["passwd"] = command{"change the account password", runPasswd}
}

// userNameRE is the protocol's rule for account names.
var userNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// kdfFlags are hidden tuning knobs of the password KDF, so tests can use
// cheap (but still accepted) parameters.
type kdfFlags struct{ time, memKiB uint32 }

func addKDFFlags(fs *pflag.FlagSet) *kdfFlags {
	k := new(kdfFlags)
	fs.Uint32Var(&k.time, "kdf-time", 0, "Argon2id passes")
	fs.Uint32Var(&k.memKiB, "kdf-memory-kib", 0, "Argon2id memory in KiB")
	_ = fs.MarkHidden("kdf-time")
	_ = fs.MarkHidden("kdf-memory-kib")
	return k
}

// params applies the flags to base; zero means keep.
func (k *kdfFlags) params(base crypto.KDFParams) (crypto.KDFParams, error) {
	p := base
	if k.time != 0 {
		p.Time = k.time
	}
	if k.memKiB != 0 {
		p.MemoryKiB = k.memKiB
	}
	if p.Time < crypto.MinKDFParams.Time || p.MemoryKiB < crypto.MinKDFParams.MemoryKiB {
		return p, usagef("KDF parameters below the minimum (time %d, memory %d KiB) are refused",
			crypto.MinKDFParams.Time, crypto.MinKDFParams.MemoryKiB)
	}
	return p, nil
}

// accountArgs checks the URL and user of init and login.
func accountArgs(fs *pflag.FlagSet, user string) (string, error) {
	if fs.NArg() != 1 {
		return "", usagef("exactly one server URL is required (https://host:port)")
	}
	if !userNameRE.MatchString(user) {
		return "", usagef("--user NAME is required: 1-64 characters of A-Z a-z 0-9 . _ -")
	}
	url := strings.TrimRight(fs.Arg(0), "/")
	if !strings.HasPrefix(url, "https://") {
		return "", usagef("the server URL must start with https://")
	}
	return url, nil
}

// refuseOverwrite keeps init and login from silently replacing the
// session of another account on this device.
func refuseOverwrite(url, user string) error {
	old, dir, err := loadConfig()
	if err != nil || old.Token == "" || (old.Server == url && old.User == user) {
		return nil
	}
	return fmt.Errorf("this device is logged in as %s@%s: run 'sealfs logout' first, or use another SEALFS_CONFIG_DIR (now %s)", old.User, old.Server, dir)
}

func runInit(args []string) error {
	fs := newFlags("init", "URL --user NAME --invite CODE [--fingerprint SHA256:…] [--ca-cert FILE] [--password-file FILE]")
	user := fs.String("user", "", "account name")
	invite := fs.String("invite", "", "invite `CODE` from 'sealfs server invite'")
	cf := addCommonFlags(fs)
	tf := addTrustFlags(fs)
	kf := addKDFFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, err := accountArgs(fs, *user)
	if err != nil {
		return err
	}
	if *invite == "" {
		return usagef("--invite CODE is required (the server's operator makes one with 'sealfs server invite')")
	}
	kdf, err := kf.params(crypto.DefaultKDFParams(nil))
	if err != nil {
		return err
	}
	if err := refuseOverwrite(url, *user); err != nil {
		return err
	}
	_, dir, _ := loadConfig()
	ctx, stop := signalContext()
	defer stop()
	cfg, c, err := establishTrust(ctx, url, tf)
	if err != nil {
		return err
	}
	cfg.User = *user
	pw, err := getNewPassword(cf.passwordFile, *user+"@"+url)
	if err != nil {
		return err
	}
	c.OnTokenChange(func(tok string, exp int64) { cfg.Token, cfg.TokenExpires = tok, exp })
	_, _, err = vault.Register(ctx, c, vault.RegisterParams{
		User: *user, Invite: *invite, Password: pw, KDF: kdf, Layout: crypto.DefaultLayout,
	})
	if remote.IsExists(err) {
		return fmt.Errorf("the user name %s is taken on %s: choose another with --user", *user, url)
	}
	if err != nil {
		return explain(err, cfg)
	}
	if err := saveConfig(dir, cfg); err != nil {
		return fmt.Errorf("the account was created, but %v; run 'sealfs login %s --user %s' once the problem is fixed", err, url, *user)
	}
	if !cf.quiet {
		fmt.Printf("created account %s on %s; this device is logged in\n", *user, url)
	}
	return nil
}

func runLogin(args []string) error {
	fs := newFlags("login", "URL --user NAME [--fingerprint SHA256:…] [--ca-cert FILE] [--password-file FILE]")
	user := fs.String("user", "", "account name")
	cf := addCommonFlags(fs)
	tf := addTrustFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, err := accountArgs(fs, *user)
	if err != nil {
		return err
	}
	if err := refuseOverwrite(url, *user); err != nil {
		return err
	}
	_, dir, _ := loadConfig()
	ctx, stop := signalContext()
	defer stop()
	cfg, c, err := establishTrust(ctx, url, tf)
	if err != nil {
		return err
	}
	cfg.User = *user
	pw, err := getPassword(cf.passwordFile, fmt.Sprintf("Password for %s@%s: ", *user, url))
	if err != nil {
		return err
	}
	c.OnTokenChange(func(tok string, exp int64) { cfg.Token, cfg.TokenExpires = tok, exp })
	if _, _, err := vault.Login(ctx, c, *user, pw); err != nil {
		return explain(err, cfg)
	}
	if err := saveConfig(dir, cfg); err != nil {
		return err
	}
	if !cf.quiet {
		fmt.Printf("logged in as %s on %s\n", *user, url)
	}
	return nil
}

func runLogout(args []string) error {
	fs := newFlags("logout", "")
	cf := addCommonFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments")
	}
	cfg, dir, err := loadConfig()
	if err != nil {
		return err
	}
	if cfg.Token == "" {
		if !cf.quiet {
			fmt.Printf("%s@%s is already logged out\n", cfg.User, cfg.Server)
		}
		return nil
	}
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	c.SetToken(cfg.Token)
	ctx, stop := signalContext()
	defer stop()
	err = c.Logout(ctx)
	if err != nil && !remote.IsUnauthorized(err) {
		// The token is forgotten anyway; it expires on the server by itself.
		fmt.Fprintf(os.Stderr, "sealfs logout: warning: could not revoke the session on the server: %v\n", explain(err, cfg))
	}
	cfg.Token, cfg.TokenExpires = "", 0
	if err := saveConfig(dir, cfg); err != nil {
		return err
	}
	if !cf.quiet {
		fmt.Printf("logged out %s@%s\n", cfg.User, cfg.Server)
	}
	return nil
}

func runPasswd(args []string) error {
	fs := newFlags("passwd", "[--password-file FILE] [--new-password-file FILE]")
	cf := addCommonFlags(fs)
	newFile := fs.String("new-password-file", "", "read the new password from `FILE` (else asked twice)")
	kf := addKDFFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments")
	}
	ctx, stop := signalContext()
	defer stop()
	s, err := openSession(ctx, cf)
	if err != nil {
		return err
	}
	acct, err := s.c.Account(ctx)
	if err != nil {
		return explain(err, s.cfg)
	}
	kdf, err := kf.params(acct.KDF)
	if err != nil {
		return err
	}
	var newPW []byte
	if *newFile != "" {
		newPW, err = readPasswordFile(*newFile)
	} else {
		newPW, err = askNewPassword(s.cfg.User + "@" + s.cfg.Server)
	}
	if err != nil {
		return err
	}
	err = vault.ChangePassword(ctx, s.c, s.cfg.User, s.pw, newPW, kdf)
	if errors.Is(err, vault.ErrWrongPassword) {
		return fmt.Errorf("wrong current password for %s@%s; nothing was changed", s.cfg.User, s.cfg.Server)
	}
	if err != nil {
		return explain(err, s.cfg)
	}
	if !cf.quiet {
		fmt.Println("password changed; other devices stay logged in, and need the new password from now on")
	}
	return nil
}
