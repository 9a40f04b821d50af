package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// commonFlags are the options every account command takes.
type commonFlags struct {
	passwordFile string
	quiet        bool
}

func addCommonFlags(fs *pflag.FlagSet) *commonFlags {
	c := new(commonFlags)
	fs.StringVar(&c.passwordFile, "password-file", "", "read the password from `FILE` (else $SEALFS_PASSWORD_FILE, $SEALFS_PASSWORD_COMMAND or the terminal)")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "print nothing but errors")
	return c
}

// trustFlags select how a new device authenticates the server.
type trustFlags struct {
	fingerprint string
	caCert      string
}

func addTrustFlags(fs *pflag.FlagSet) *trustFlags {
	t := new(trustFlags)
	fs.StringVar(&t.fingerprint, "fingerprint", "", "pin the server certificate `SHA256:…` (from 'sealfs server fingerprint')")
	fs.StringVar(&t.caCert, "ca-cert", "", "verify the server with the CA certificates in `FILE` instead of the system's")
	return t
}

// signalContext is cancelled by the first SIGINT or SIGTERM, so transfers
// stop cleanly and keep their resume state; a second signal kills at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// newClient builds the API client for a configuration.
func newClient(cfg *clientConfig) (*remote.Client, error) {
	return newClientWith(cfg, remote.Options{})
}

// newClientWith is newClient with the caller's timeout and retry policy;
// the server, trust and user agent always come from the configuration.
func newClientWith(cfg *clientConfig, o remote.Options) (*remote.Client, error) {
	o.URL = cfg.Server
	o.Trust = remote.Trust{Fingerprint: cfg.Fingerprint, CAFile: cfg.CACert}
	o.UserAgent = "sealfs/" + version
	return remote.New(o)
}

// establishTrust decides, for a new device, how to authenticate the server
// at url, and checks that it answers. A certificate that neither the
// system nor a CA file vouches for is shown to a person to accept (like
// ssh's first contact); without a person, --fingerprint is required.
func establishTrust(ctx context.Context, url string, tf *trustFlags) (*clientConfig, *remote.Client, error) {
	cfg := &clientConfig{Server: url}
	if tf.fingerprint != "" && tf.caCert != "" {
		return nil, nil, usagef("give either --fingerprint or --ca-cert, not both")
	}
	if tf.fingerprint != "" {
		fp, err := remote.ParseFingerprint(tf.fingerprint)
		if err != nil {
			return nil, nil, usagef("%v", err)
		}
		cfg.Fingerprint = fp
	}
	if tf.caCert != "" {
		abs, err := filepath.Abs(tf.caCert)
		if err != nil {
			return nil, nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, nil, fmt.Errorf("CA certificate file: %w", err)
		}
		cfg.CACert = abs
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	c.SetToken("")
	err = c.Health(ctx)
	var ut *remote.UntrustedCertError
	if errors.As(err, &ut) && ut.Fingerprint != "" && cfg.CACert == "" && cfg.Fingerprint == "" {
		if !interactive() {
			return nil, nil, fmt.Errorf("the certificate of %s is not signed by a trusted authority (%v).\n"+
				"It presented %s. Check that against 'sealfs server fingerprint' on the server and pass it with --fingerprint, or pass --ca-cert FILE",
				url, ut.Err, ut.Fingerprint)
		}
		fmt.Fprintf(os.Stderr, "The authenticity of %s can't be established.\nIts certificate fingerprint is %s.\n"+
			"Compare it with the output of 'sealfs server fingerprint' on the server.\n", url, ut.Fingerprint)
		ok, aerr := askYesNo("Are you sure you want to trust this server?")
		if aerr != nil || !ok {
			return nil, nil, errors.New("the server's certificate was not accepted; nothing was changed")
		}
		cfg.Fingerprint = ut.Fingerprint
		if c, err = newClient(cfg); err != nil {
			return nil, nil, err
		}
		err = c.Health(ctx)
	}
	if err != nil {
		return nil, nil, explain(err, cfg)
	}
	return cfg, c, nil
}

// session is an open vault for an account command.
type session struct {
	cfg *clientConfig
	dir string
	c   *remote.Client
	v   *vault.Vault
	pw  []byte // the password, kept for passwd only; never written anywhere
}

// openSession loads the configuration, asks for the password and unlocks
// the vault. A session token renewed on the way is saved.
func openSession(ctx context.Context, cf *commonFlags) (*session, error) {
	return openSessionWith(ctx, cf.passwordFile, sessionOptions{})
}

// sessionOptions tune openSessionWith for callers with needs of their own:
// the mount waits for an unreachable server as long as its --timeout says,
// and a daemonized mount may already hold the password.
type sessionOptions struct {
	client        remote.Options
	password      []byte
	unlockTimeout time.Duration // 0: no limit beyond ctx
}

// openSessionWith loads the configuration, connects, and unlocks the vault.
func openSessionWith(ctx context.Context, passwordFile string, o sessionOptions) (*session, error) {
	cfg, dir, err := loadConfig()
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("%s@%s is logged out on this device: run 'sealfs login %s --user %s'", cfg.User, cfg.Server, cfg.Server, cfg.User)
	}
	c, err := newClientWith(cfg, o.client)
	if err != nil {
		return nil, err
	}
	c.SetToken(cfg.Token)
	saver := &tokenSaver{dir: dir, server: cfg.Server, user: cfg.User, known: cfg.Token}
	c.OnTokenChange(func(tok string, exp int64) {
		if _, err := saver.save(tok, exp); err != nil {
			fmt.Fprintf(os.Stderr, "sealfs: warning: could not save the renewed session: %v\n", err)
		}
	})
	pw := o.password
	if pw == nil {
		if pw, err = getPassword(passwordFile, fmt.Sprintf("Password for %s@%s: ", cfg.User, cfg.Server)); err != nil {
			return nil, err
		}
	}
	if o.unlockTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.unlockTimeout)
		defer cancel()
	}
	v, _, err := vault.Unlock(ctx, c, cfg.User, pw)
	if err != nil {
		return nil, explain(err, cfg)
	}
	return &session{cfg: cfg, dir: dir, c: c, v: v, pw: pw}, nil
}

// errInterrupted is what a command stopped by a signal reports.
var errInterrupted = errors.New("interrupted")

// explain turns an error into a message that says what went wrong and what
// to do about it. Errors it does not recognise pass unchanged.
func explain(err error, cfg *clientConfig) error {
	if err == nil {
		return nil
	}
	who := cfg.User + "@" + cfg.Server
	var fm *remote.FingerprintMismatchError
	var ut *remote.UntrustedCertError
	var ne *remote.NetError
	switch {
	case errors.As(err, &fm):
		return fmt.Errorf("\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"+
			"@    WARNING: REMOTE SERVER IDENTIFICATION HAS CHANGED!    @\n"+
			"@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"+
			"Someone could be intercepting the connection, or the server's certificate was replaced.\n"+
			"This device pinned %s\nbut %s presented %s.\n"+
			"Nothing was sent. If the certificate was replaced on purpose, check the new fingerprint with\n"+
			"'sealfs server fingerprint' on the server, then run:\n  sealfs login %s --user %s --fingerprint %s",
			fm.Want, cfg.Server, fm.Got, cfg.Server, cfg.User, fm.Got)
	case errors.As(err, &ut):
		return fmt.Errorf("the certificate of %s is not trusted (%v); pass --fingerprint SHA256:… from 'sealfs server fingerprint', or --ca-cert FILE", cfg.Server, ut.Err)
	case errors.As(err, &ne) && ne.Refused():
		return fmt.Errorf("%v; is 'sealfs serve' running?", ne)
	case errors.As(err, &ne):
		return fmt.Errorf("%v; check the network and the server address", ne)
	case errors.Is(err, vault.ErrWrongPassword):
		return fmt.Errorf("wrong password for %s: check the password, or run 'sealfs login' again", who)
	case remote.IsCode(err, "account_disabled"):
		return fmt.Errorf("the account %s is disabled by the server's operator; ask them to enable it", who)
	case remote.IsCode(err, "throttled"):
		return fmt.Errorf("too many failed logins for %s: wait a while and try again (%v)", who, err)
	case remote.IsCode(err, "invite_invalid"):
		return fmt.Errorf("the invite code is unknown, used or expired: ask the server's operator for a new one ('sealfs server invite')")
	case remote.IsUnauthorized(err):
		return fmt.Errorf("the session of %s is no longer valid: run 'sealfs login %s --user %s'", who, cfg.Server, cfg.User)
	case remote.IsCode(err, wire.CodeQuotaExceeded):
		return fmt.Errorf("%v: the account's storage quota is exhausted; ask the operator for more (what removed files held counts until the server collects it as garbage, 24 hours after the removal by default)", err)
	case remote.IsCode(err, wire.CodeInsufficientStorage):
		return fmt.Errorf("%v: the server's disk is full; ask its operator", err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// Not the server's answer: this machine's own disk.
		return fmt.Errorf("%v: the disk (or your quota on it) here is full; free some space and run the command again", err)
	case errors.Is(err, context.Canceled):
		return errInterrupted
	}
	return err
}
