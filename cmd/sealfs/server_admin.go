package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/keyring"
	"github.com/sealfs/sealfs/server/tlscert"
)

func init() {
	commands["server"] = command{"administer a storage server's data directory (invite, users, scrub, rotate-key…)", runServerAdmin}
}

var serverCommands = map[string]func(args []string) error{
	"fingerprint": adminFingerprint,
	"invite":      adminInvite,
	"users":       adminUsers,
	"disable":     func(a []string) error { return adminSetState("disable", a, true) },
	"enable":      func(a []string) error { return adminSetState("enable", a, false) },
	"scrub":       adminScrub,
	"rotate-key":  adminRotateKey,
}

func runServerAdmin(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: sealfs server fingerprint|invite|users|disable|enable|scrub|rotate-key --data DIR ...")
		if len(args) == 0 {
			return usagef("a server subcommand is required")
		}
		return nil
	}
	f, ok := serverCommands[args[0]]
	if !ok {
		return usagef("unknown server subcommand %q", args[0])
	}
	return f(args[1:])
}

func adminFingerprint(args []string) error {
	fl := newFlags("server fingerprint", "--data DIR")
	data := fl.String("data", "", "data directory")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if *data == "" || fl.NArg() != 0 {
		return usagef("--data DIR is required and there are no arguments")
	}
	cert := filepath.Join(*data, tlsDir, tlscert.CertFileName)
	if b, err := os.ReadFile(filepath.Join(*data, servingFile)); err == nil {
		cert = strings.TrimSpace(string(b))
	}
	fp, err := tlscert.FingerprintFile(cert)
	if err != nil {
		return fmt.Errorf("no certificate to fingerprint (%v): start 'sealfs serve --data %s' once first", err, *data)
	}
	fmt.Println(fp)
	return nil
}

// adminFlags is the flag set every admin command shares: the data
// directory and, for a keyring kept elsewhere, its path.
type adminFlags struct {
	*pflag.FlagSet
	data, keyring *string
}

func newAdminFlags(name, usage string) adminFlags {
	fl := newFlags("server "+name, usage)
	return adminFlags{FlagSet: fl,
		data:    fl.String("data", "", "data directory"),
		keyring: fl.String("keyring", "", "keyring file (default DIR/keyring.json)")}
}

// open parses args and opens the stores of an existing data directory.
func (a adminFlags) open(args []string, nargs int) (*stores, error) {
	if err := parseFlags(a.FlagSet, args); err != nil {
		return nil, err
	}
	if a.NArg() != nargs {
		if nargs == 0 {
			return nil, usagef("takes no arguments besides flags")
		}
		return nil, usagef("exactly %d argument(s) required", nargs)
	}
	return openStores(*a.data, *a.keyring, false)
}

// parseSize reads sizes like 500M, 10GiB, 1T or a plain byte count.
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (e.g. 500M, 10G)", s)
	}
	return int64(v * float64(mult)), nil
}

// parseDays extends time.ParseDuration with a "d" suffix for days.
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a duration (e.g. 7d, 12h)", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration (e.g. 7d, 12h)", s)
	}
	return d, nil
}

func adminInvite(args []string) error {
	fl := newAdminFlags("invite", "--data DIR USER [--expires 7d] [--quota SIZE]")
	expires := fl.String("expires", "7d", "how long the invite stays valid")
	quota := fl.String("quota", "0", "the account's quota (0: unlimited)")
	st, err := fl.open(args, 1)
	if err != nil {
		return err
	}
	defer st.Close()
	exp, err := parseDays(*expires)
	if err != nil {
		return usagef("--expires: %v", err)
	}
	q, err := parseSize(*quota)
	if err != nil {
		return usagef("--quota: %v", err)
	}
	code, err := server.NewInvite(context.Background(), st.meta, fl.Arg(0), exp, q)
	if err != nil {
		return err
	}
	fmt.Println(code)
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func adminUsers(args []string) error {
	st, err := newAdminFlags("users", "--data DIR").open(args, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	accts, err := st.meta.ListAccounts(context.Background())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSTATE\tUSED\tQUOTA\tCREATED")
	for _, a := range accts {
		q := "unlimited"
		if a.QuotaBytes > 0 {
			q = humanBytes(a.QuotaBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.State, humanBytes(a.UsedBytes), q, a.CreatedAt.Format("2006-01-02"))
	}
	return tw.Flush()
}

func adminSetState(name string, args []string, disable bool) error {
	fl := newAdminFlags(name, "--data DIR USER")
	st, err := fl.open(args, 1)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.meta.SetAccountState(context.Background(), fl.Arg(0), disable); err != nil {
		return fmt.Errorf("%s %s: %w", name, fl.Arg(0), err)
	}
	return touchStamp(*fl.data)
}

// progressLine prints a running count on stderr when it is a terminal.
func progressLine(what string) server.Progress {
	if !isTerminal(os.Stderr) {
		return nil
	}
	last := time.Now()
	return func(n int64) {
		if time.Since(last) > 200*time.Millisecond {
			fmt.Fprintf(os.Stderr, "\r%s: %d", what, n)
			last = time.Now()
		}
	}
}

func adminScrub(args []string) error {
	st, err := newAdminFlags("scrub", "--data DIR").open(args, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	var checked int64
	prog := progressLine("checked")
	damage, err := server.Scrub(context.Background(), st.meta, st.atrest, func(n int64) {
		checked = n
		if prog != nil {
			prog(n)
		}
	})
	if prog != nil {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	for _, d := range damage {
		fmt.Println(d)
	}
	fmt.Fprintf(os.Stderr, "scrub: checked %d stored objects, %d damaged or missing\n", checked, len(damage))
	if len(damage) > 0 {
		return fmt.Errorf("%d damaged or missing objects (listed above)", len(damage))
	}
	return nil
}

// keyringIDs adapts *keyring.Keyring to server.Keyring.
type keyringIDs struct{ *keyring.Keyring }

func (k keyringIDs) KeyIDs() []string {
	var ids []string
	for _, ki := range k.Keys() {
		ids = append(ids, ki.ID)
	}
	return ids
}

func adminRotateKey(args []string) error {
	fl := newAdminFlags("rotate-key", "--data DIR [--reencrypt]")
	reencrypt := fl.Bool("reencrypt", false, "also rewrite every stored blob and value under fresh data keys")
	settle := fl.Duration("settle", keyring.SettleTime, "wait for running servers to switch keys")
	fl.MarkHidden("settle")
	st, err := fl.open(args, 0)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(os.Stderr, "rotate-key: new key current; waiting %s for running servers to switch\n", *settle)
	prog := progressLine("rewrapped")
	id, err := server.RotateKey(context.Background(), st.meta, st.atrest, keyringIDs{st.keyring}, *settle, *reencrypt, prog)
	if prog != nil {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rotate-key: %s is the only key; older keys removed\n", id)
	return touchStamp(*fl.data)
}

// touchStamp tells a running server that this command changed sessions or
// accounts behind its back, so it drops the sessions it remembers.
func touchStamp(data string) error {
	if err := server.TouchSessionStamp(filepath.Join(data, server.SessionStampName)); err != nil {
		return fmt.Errorf("telling a running server (%s): %w; it may accept revoked sessions for up to 10 s", server.SessionStampName, err)
	}
	return nil
}
