package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sealfs/sealfs/fusefs"
)

// mountStatus is the JSON file a running mount keeps up to date, so that
// 'sealfs status' and 'sealfs umount' can find it.
type mountStatus struct {
	PID        int       `json:"pid"`
	Server     string    `json:"server"`
	User       string    `json:"user"`
	MountPoint string    `json:"mount_point"`
	Started    time.Time `json:"started"`
	Updated    time.Time `json:"updated"`
	// Conn is the kernel's number for the FUSE connection (the minor
	// device number of the mount, the directory name under
	// /sys/fs/fuse/connections): umount --force aborts it through there
	// when the mount point is gone already (a lazy unmount).
	Conn int `json:"fuse_connection,omitempty"`
	fusefs.Stats
}

// statusDir is where mounts write their status files:
// $XDG_RUNTIME_DIR/sealfs, /run/sealfs for root, else a per-user directory
// under the temporary directory.
func statusDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "sealfs")
	}
	if os.Geteuid() == 0 {
		return "/run/sealfs"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sealfs-%d", os.Getuid()))
}

// statusWriter keeps a mount's status file current: it looks at the
// counters five times a second and rewrites the file when they changed, so
// that 'sealfs status' run right after a copy shows it, and otherwise
// every few seconds.
type statusWriter struct {
	path string
	stop chan struct{}
	done chan struct{}
}

const (
	statusPoll    = 200 * time.Millisecond
	statusRefresh = 5 * time.Second
)

func startStatus(dir string, cfg *clientConfig, fsys *fusefs.FS, log *slog.Logger) *statusWriter {
	sd := statusDir()
	w := &statusWriter{path: filepath.Join(sd, strconv.Itoa(os.Getpid())+".json"), stop: make(chan struct{}), done: make(chan struct{})}
	st := mountStatus{PID: os.Getpid(), Server: cfg.Server, User: cfg.User, MountPoint: dir, Started: time.Now()}
	st.Conn, _ = fuseConn(dir)
	var last fusefs.Stats
	write := func(force bool) {
		stats := fsys.Stats()
		if !force && reflect.DeepEqual(stats, last) && time.Since(st.Updated) < statusRefresh {
			return
		}
		last = stats
		st.Updated = time.Now()
		st.Stats = stats
		b, _ := json.MarshalIndent(&st, "", "  ")
		if err := writeFileAtomic(w.path, append(b, '\n'), 0o600, false); err != nil {
			log.Warn("status file", "err", err)
		}
	}
	if err := os.MkdirAll(sd, 0o700); err != nil {
		log.Warn("status directory", "err", err)
	}
	write(true)
	go func() {
		defer close(w.done)
		t := time.NewTicker(statusPoll)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				write(false)
			}
		}
	}()
	return w
}

// remove stops the updates and deletes the file.
func (w *statusWriter) remove() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		<-w.done
	}
	os.Remove(w.path)
}

// alive reports whether process pid exists and has not exited (a zombie
// waiting for its parent has).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// runningMounts reads the status files of live mounts; stale ones (their
// process is gone) are ignored.
func runningMounts() []mountStatus {
	files, _ := filepath.Glob(filepath.Join(statusDir(), "*.json"))
	var out []mountStatus
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st mountStatus
		if json.Unmarshal(b, &st) != nil || st.PID <= 0 || !alive(st.PID) {
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MountPoint < out[j].MountPoint })
	return out
}

func runStatus(args []string) error {
	fl := newFlags("status", "[--json]")
	asJSON := fl.Bool("json", false, "print the status files as a JSON array")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	mounts := runningMounts()
	if *asJSON {
		if mounts == nil {
			mounts = []mountStatus{}
		}
		b, _ := json.MarshalIndent(mounts, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	if len(mounts) == 0 {
		fmt.Println("no sealfs mounts are running")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MOUNT POINT\tACCOUNT\tPID\tUPLOADS\tUNSAVED\tFILES PENDING\tCOMMITS\tCONFLICTS")
	for _, m := range mounts {
		fmt.Fprintf(tw, "%s\t%s@%s\t%d\t%d\t%s\t%d\t%d\t%d\n", m.MountPoint, m.User, m.Server, m.PID,
			m.UploadsInFlight, humanBytes(m.DirtyBytes), m.FilesPending, m.Commits, m.Conflicts)
	}
	tw.Flush()
	for _, m := range mounts {
		for _, e := range m.LastErrors {
			fmt.Printf("%s: %s\n", m.MountPoint, e)
		}
	}
	return nil
}

func runUmount(args []string) error {
	fl := newFlags("umount", "[--force] DIR")
	wait := fl.Duration("wait", 10*time.Minute, "how long to wait for the mount's uploads to finish")
	force := fl.Bool("force", false, "cut the kernel's connection to a mount process that is hung or gone (root only); processes blocked on the mount get an error, and what the mount process holds is committed only if it still can")
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
	var pid, conn int
	for _, m := range runningMounts() {
		if m.MountPoint == dir {
			pid, conn = m.PID, m.Conn
		}
	}
	if *force {
		if err := forceUnmount(dir, conn); err != nil {
			return err
		}
		if pid == 0 {
			return nil
		}
		return waitExit(pid, *wait)
	}
	out, err := exec.Command(fusermount(), "-u", dir).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if pid == 0 {
			return fmt.Errorf("unmounting %s: %s", dir, msg)
		}
		// Busy: let the mount process end it lazily, after its
		// files are closed.
		if kerr := syscall.Kill(pid, syscall.SIGTERM); kerr != nil {
			return fmt.Errorf("unmounting %s: %s", dir, msg)
		}
		fmt.Fprintf(os.Stderr, "sealfs: %s is busy (%s); it is unmounted once its files are closed\n", dir, msg)
	}
	if pid == 0 {
		return nil
	}
	return waitExit(pid, *wait)
}

// waitExit waits for the mount process, which commits what is pending
// before it exits.
func waitExit(pid int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the mount process %d is still running after %v; see 'sealfs status' and its log, or end it with kill -9 %d", pid, wait, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// forceUnmount aborts the FUSE connection of the mount at dir, as umount -f
// does: every request the kernel is waiting on fails, so nothing stays
// blocked on a mount process that is hung, stopped, or stuck after a kill
// (a thread of a killed process can stay blocked in the kernel on a lock
// that a request to that same process holds, and then nothing ever
// answers). The mount point is then detached. A mount point detached
// already (fusermount3 -u -z), which umount -f no longer reaches, is
// aborted through its connection number conn, from its status file.
func forceUnmount(dir string, conn int) error {
	if _, ok := fuseConn(dir); !ok {
		if conn == 0 {
			return fmt.Errorf("%s is not a FUSE mount", dir)
		}
		return abortConn(conn)
	}
	err := syscall.Unmount(dir, syscall.MNT_FORCE)
	if errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("unmounting %s by force needs root; as this user, 'fusermount3 -u -z %s' detaches it", dir, dir)
	}
	if err == nil || errors.Is(err, syscall.EINVAL) {
		return nil // EINVAL: it was unmounted meanwhile
	}
	// Aborted, but still in use (EBUSY): detach it; it goes once its
	// files are closed, which no longer waits on anything.
	if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil && !errors.Is(derr, syscall.EINVAL) {
		return fmt.Errorf("unmounting %s by force: %v, then %v", dir, err, derr)
	}
	return nil
}

// fusectl is where the kernel's FUSE control file system is mounted.
const fusectl = "/sys/fs/fuse/connections"

// abortConn aborts FUSE connection conn through the control file system,
// mounting it first where nothing did.
func abortConn(conn int) error {
	abort := filepath.Join(fusectl, strconv.Itoa(conn), "abort")
	if _, err := os.Stat(abort); err != nil {
		if merr := syscall.Mount("fusectl", fusectl, "fusectl", 0, ""); merr != nil && !errors.Is(merr, syscall.EBUSY) {
			return fmt.Errorf("aborting FUSE connection %d: mounting %s: %v (needs root)", conn, fusectl, merr)
		}
	}
	if err := os.WriteFile(abort, []byte("1\n"), 0); err != nil {
		return fmt.Errorf("aborting FUSE connection %d: %v", conn, err)
	}
	return nil
}

// fuseConn returns the connection number of the FUSE file system mounted
// at dir, from /proc/self/mountinfo (nothing touches the mount itself,
// which may not answer); ok is false when dir is not a FUSE mount point.
func fuseConn(dir string) (conn int, ok bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		if unescapeMountinfo(f[4]) != dir || !strings.HasPrefix(f[sep+1], "fuse") {
			continue
		}
		// The last line for dir is the mount on top.
		_, minor, _ := strings.Cut(f[2], ":")
		conn, _ = strconv.Atoi(minor)
		ok = true
	}
	return conn, ok
}

// unescapeMountinfo undoes the octal escapes of spaces, tabs, newlines and
// backslashes in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
