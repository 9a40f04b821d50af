package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/sealfs/sealfs/cache"
	"github.com/sealfs/sealfs/fusefs"
	"github.com/sealfs/sealfs/remote"
)

func init() {
	commands["mount"] = command{"show the account's files at a local directory (FUSE)", runMount}
	commands["umount"] = command{"unmount a sealfs mount, after its uploads finish", runUmount}
	commands["status"] = command{"list the running mounts", runStatus}
}

// mountFlags are the options of sealfs mount.
type mountFlags struct {
	common     *commonFlags
	cacheDir   string
	cacheSize  string
	writeMem   string
	readOnly   bool
	allowOther bool
	daemon     bool
	timeout    time.Duration
	cpuprofile *string
	debugFUSE  bool
	writeBack  time.Duration
	attrDelay  time.Duration
}

// daemonEnv marks the re-executed child of mount --daemon; the parent
// passes the password on fd 3 and reads the outcome from fd 4.
const daemonEnv = "SEALFS_MOUNT_DAEMON"

func runMount(args []string) error {
	fl := newFlags("mount", "DIR [--password-file F] [--cache-dir D] [--cache-size SIZE] [--read-only] [--allow-other] [--daemon] [--timeout D]")
	mf := &mountFlags{common: addCommonFlags(fl)}
	fl.StringVar(&mf.cacheDir, "cache-dir", "", "keep sealed chunks in `DIR` (default $XDG_CACHE_HOME/sealfs/<server and user>)")
	fl.StringVar(&mf.cacheSize, "cache-size", "1G", "cap the chunk cache at `SIZE`")
	fl.StringVar(&mf.writeMem, "write-buffer", "64M", "memory for writes not yet uploaded; writers wait beyond it")
	fl.BoolVar(&mf.readOnly, "read-only", false, "refuse every change")
	fl.BoolVar(&mf.allowOther, "allow-other", false, "let other users access the mount (needs user_allow_other in /etc/fuse.conf)")
	fl.BoolVar(&mf.daemon, "daemon", false, "run in the background; return once the mount is ready")
	fl.DurationVar(&mf.timeout, "timeout", 30*time.Second, "how long an operation waits for an unreachable server before failing with EIO")
	mf.cpuprofile = addProfileFlag(fl)
	fl.BoolVar(&mf.debugFUSE, "debug-fuse", false, "log every FUSE request and answer to stderr")
	fl.MarkHidden("debug-fuse")
	fl.DurationVar(&mf.writeBack, "write-back-age", time.Hour, "commit a file still open once chunks uploaded for it have waited this long (keep it well under the server's --gc-grace)")
	fl.MarkHidden("write-back-age")
	fl.DurationVar(&mf.attrDelay, "attr-delay", fusefs.DefaultAttrDelay, "send a chmod, chown or utimensat this long after it, with the ones that follow it meanwhile (fsync and unmount send them at once)")
	fl.MarkHidden("attr-delay")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usagef("exactly one mount point is required")
	}
	dir, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usagef("mount point %s is not a directory", dir)
	}
	if mf.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if mf.daemon && os.Getenv(daemonEnv) == "" {
		return startDaemon(args, mf)
	}
	return mountForeground(dir, mf)
}

// mountForeground mounts and serves until the mount ends: by umount,
// fusermount3 -u, SIGINT or SIGTERM. Pending uploads are committed before
// it returns.
func mountForeground(dir string, mf *mountFlags) (err error) {
	notify := func(error) {}
	var pw []byte
	if os.Getenv(daemonEnv) != "" {
		pwFile, notifyFile := os.NewFile(3, "password"), os.NewFile(4, "notify")
		pw, err = io.ReadAll(pwFile)
		pwFile.Close()
		notify = func(e error) {
			msg := "ok\n"
			if e != nil {
				msg = e.Error() + "\n"
			}
			notifyFile.WriteString(msg)
			notifyFile.Close()
			notify = func(error) {}
		}
		defer func() { notify(err) }()
		if err != nil {
			return err
		}
	}
	cacheSize, err := parseSize(mf.cacheSize)
	if err != nil || cacheSize <= 0 {
		return usagef("--cache-size: %q is not a size", mf.cacheSize)
	}
	writeMem, err := parseSize(mf.writeMem)
	if err != nil || writeMem < 4<<20 {
		return usagef("--write-buffer: %q is not a size of at least 4M", mf.writeMem)
	}
	stopProfile, err := startCPUProfile(*mf.cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := openMountSession(ctx, mf, pw)
	if err != nil {
		return err
	}
	defer s.c.Close()
	cacheDir := mf.cacheDir
	if cacheDir == "" {
		if cacheDir, err = defaultCacheDir(s.cfg); err != nil {
			return err
		}
	}
	chunks, err := cache.OpenChunks(cacheDir, cacheSize)
	if err != nil {
		return fmt.Errorf("chunk cache: %w", err)
	}
	// The write buffer plus a few chunks in flight must stay well inside
	// the mount's memory budget; tell the collector so.
	debug.SetMemoryLimit(writeMem + 128<<20)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fsys, err := fusefs.New(ctx, fusefs.Options{
		Vault: s.v, Chunks: chunks, DirtyBytes: writeMem, Timeout: mf.timeout,
		ReadOnly: mf.readOnly, Log: log, WriteBackAge: mf.writeBack, AttrDelay: mf.attrDelay,
	})
	if err != nil {
		return explain(err, s.cfg)
	}
	opts := fsys.MountOptions(mf.allowOther)
	opts.Debug = mf.debugFUSE
	server, err := fs.Mount(dir, fsys.Root(), opts)
	if err != nil {
		return fmt.Errorf("mounting at %s: %w", dir, err)
	}
	if err := fusefs.RaiseReadahead(dir); err != nil {
		log.Debug("sequential reads use the kernel's default readahead", "err", err)
	}
	fsys.Watch()
	status := startStatus(dir, s.cfg, fsys, log)
	notify(nil)
	if !mf.common.quiet {
		fmt.Fprintf(os.Stderr, "sealfs: %s@%s mounted at %s\n", s.cfg.User, s.cfg.Server, dir)
	}
	go func() {
		<-ctx.Done()
		stop()
		unmount(dir, server, log)
		// A second signal ends the process at once.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		log.Error("second signal: exiting without waiting for uploads")
		status.remove()
		os.Exit(exitFailure)
	}()
	server.Wait()
	err = fsys.Shutdown()
	status.remove()
	if err != nil {
		return err
	}
	if !mf.common.quiet {
		fmt.Fprintf(os.Stderr, "sealfs: %s unmounted\n", dir)
	}
	return nil
}

// unmount ends the mount from inside: a normal unmount, or a lazy one when
// files are still open (the mount then ends when they are closed).
func unmount(dir string, server interface{ Unmount() error }, log *slog.Logger) {
	if err := server.Unmount(); err == nil {
		return
	}
	if out, err := exec.Command(fusermount(), "-u", "-z", dir).CombinedOutput(); err != nil {
		log.Error("unmount failed", "dir", dir, "err", err, "output", string(out))
	}
}

// fusermount returns the helper that unmounts FUSE mounts.
func fusermount() string {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return "fusermount3"
}

// openMountSession unlocks the vault like openSession does, but with the
// transport policy of a mount: requests keep retrying until --timeout
// rather than a fixed number of times, so a server restart is ridden out
// and a dead server is reported after exactly the time the user chose.
func openMountSession(ctx context.Context, mf *mountFlags, pw []byte) (*session, error) {
	return openSessionWith(ctx, mf.common.passwordFile, sessionOptions{
		client: remote.Options{
			Timeout: max(mf.timeout, 10*time.Second),
			Retry:   remote.RetryPolicy{Attempts: 1 << 20, Base: 100 * time.Millisecond, Max: 2 * time.Second},
		},
		password:      pw,
		unlockTimeout: mf.timeout,
	})
}

// defaultCacheDir is $XDG_CACHE_HOME/sealfs/<hash of server and user>: one
// cache per account, never shared between accounts.
func defaultCacheDir(cfg *clientConfig) (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory (%v): pass --cache-dir", err)
		}
		base = filepath.Join(home, ".cache")
	}
	h := sha256.Sum256([]byte(cfg.Server + "\x00" + cfg.User))
	return filepath.Join(base, "sealfs", hex.EncodeToString(h[:8])), nil
}

// startDaemon re-executes the mount detached from the terminal and returns
// once the child reports the mount ready, or with the child's error. The
// password is asked here, where the terminal is, and handed over on a pipe.
func startDaemon(args []string, mf *mountFlags) error {
	cfg, _, err := loadConfig()
	if err != nil {
		return err
	}
	pw, err := getPassword(mf.common.passwordFile, fmt.Sprintf("Password for %s@%s: ", cfg.User, cfg.Server))
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	pwR, pwW, err := os.Pipe()
	if err != nil {
		return err
	}
	nR, nW, err := os.Pipe()
	if err != nil {
		return err
	}
	logPath := filepath.Join(statusDir(), fmt.Sprintf("mount-%d.log", time.Now().UnixNano()))
	if err := os.MkdirAll(statusDir(), 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, append([]string{"mount"}, args...)...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.ExtraFiles = []*os.File{pwR, nW}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pwR.Close()
	nW.Close()
	pwW.Write(pw)
	pwW.Close()
	msg, _ := io.ReadAll(nR)
	nR.Close()
	if string(msg) == "ok\n" {
		pid := cmd.Process.Pid // Release sets it to -1
		cmd.Process.Release()
		if !mf.common.quiet {
			fmt.Fprintf(os.Stderr, "sealfs: mounted in the background (pid %d, log %s)\n", pid, logPath)
		}
		return nil
	}
	_ = cmd.Wait()
	if len(msg) == 0 {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("the mount process ended without mounting:\n%s", b)
	}
	return errors.New(string(msg[:len(msg)-1]))
}
