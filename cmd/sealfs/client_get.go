package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
)

func init() {
	commands["get"] = command{"download remote files (and with -r directories)", runGet}
}

// getItem is one remote entry and where it goes.
type getItem struct {
	remote string
	local  string
	node   *vault.Node
	// linkOf, for a file with several names in this run, is the local
	// path of its first name: it is downloaded once and the others become
	// hard links to it.
	linkOf string
}

type getter struct {
	s      *session
	prog   *transferProgress
	limit  *vault.RateLimit
	mu     sync.Mutex
	failed []error
	// dests are the local paths this run writes; no download keeps its
	// partial data under one of them.
	dests map[string]bool
	// firsts maps a file with several names to the first local path it
	// is downloaded to.
	firsts map[crypto.ID]string
	// fetched holds the local paths downloaded whole in this run.
	fetched map[string]bool
	// contents marks the sources given as "SRC/." (by index).
	contents map[int]bool
	// createsRoot is set when the run copies one directory to a
	// destination that does not exist yet (see resumeAdvice).
	createsRoot bool
}

func runGet(args []string) error {
	fl := newFlags("get", "[-r] SRC... DST")
	recursive := fl.BoolP("recursive", "r", false, "download directories and everything in them")
	limitKiB := fl.Int64("limit-download", 0, "limit the download rate to `KiB/s` (0: unlimited)")
	transfers := fl.Int("transfers", vault.DefaultParallel, "chunk downloads in flight per file")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() < 2 {
		return usagef("SRC... DST required")
	}
	raw := fl.Args()[:fl.NArg()-1]
	contents := make(map[int]bool)
	trimmed := make([]string, len(raw))
	for i, a := range raw {
		// "/t/." is /t's contents, as for cp -r (see contentsOf).
		if contentsOf(a) {
			contents[i] = true
			a = strings.TrimSuffix(a, ".")
		}
		trimmed[i] = a
	}
	srcs, err := remotePaths(trimmed, 1)
	if err != nil {
		return err
	}
	dst := fl.Arg(fl.NArg() - 1)
	var createsRoot bool
	err = withSession(cf, func(ctx context.Context, s *session) error {
		s.v.SetParallel(*transfers)
		g := &getter{s: s, limit: vault.NewRateLimit(*limitKiB * 1024), contents: contents}
		defer func() { createsRoot = g.createsRoot }()
		items, err := g.plan(ctx, srcs, dst, *recursive)
		if err != nil {
			return err
		}
		var total int64
		var nfiles int
		for _, it := range items {
			if it.node.IsFile() && it.linkOf == "" {
				total += it.node.Size()
				nfiles++
			}
		}
		g.prog = newTransferProgress(cf.quiet, "get", total, nfiles)
		err = g.run(ctx, items)
		g.prog.Finish(err == nil && len(g.failed) == 0)
		if err != nil {
			return err
		}
		return summarize(g.failed, len(items))
	})
	if errors.Is(err, errInterrupted) {
		return resumeAdvice(err, "get", srcs, dst, createsRoot)
	}
	return err
}

// plan resolves sources and the local destination with cp's rules and
// lists every entry, directories before their contents.
func (g *getter) plan(ctx context.Context, srcs []string, dst string, recursive bool) ([]getItem, error) {
	st, err := os.Stat(dst)
	intoDir := err == nil && st.IsDir()
	exists := err == nil
	if len(srcs) > 1 && !intoDir {
		return nil, fmt.Errorf("%s: not an existing directory (required with several sources)", dst)
	}
	var items []getItem
	for i, src := range srcs {
		n, err := g.s.v.Resolve(ctx, src)
		if err != nil {
			return nil, pathError(src, err)
		}
		local := dst
		if intoDir && n.Name != "" && !g.contents[i] {
			local = filepath.Join(dst, n.Name)
		}
		if n.IsDir() && n.Name != "" && !intoDir && !g.contents[i] && len(srcs) == 1 {
			g.createsRoot = true
		}
		if n.IsDir() && !recursive {
			return nil, fmt.Errorf("%s: is a directory (use -r to download it and its contents)", src)
		}
		if dirOnly(dst) && !intoDir && (exists || !n.IsDir()) {
			// As with cp: a new directory may be named so, a file may not.
			return nil, fmt.Errorf("%s: not an existing directory (written with a trailing slash, the destination must be one)", dst)
		}
		if items, err = g.walk(ctx, src, local, n, items); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func (g *getter) walk(ctx context.Context, remote, local string, n *vault.Node, items []getItem) ([]getItem, error) {
	it := getItem{remote: remote, local: local, node: n}
	if n.IsFile() && n.Nlink > 1 {
		if g.firsts == nil {
			g.firsts = map[crypto.ID]string{}
		}
		if first, ok := g.firsts[n.ID]; ok {
			it.linkOf = first
		} else {
			g.firsts[n.ID] = local
		}
	}
	items = append(items, it)
	if !n.IsDir() {
		return items, nil
	}
	children, err := g.s.v.ReadDir(ctx, n.ID)
	var rde *vault.ReadDirError
	if errors.As(err, &rde) {
		g.fail(pathError(remote, err)) // fetch what verified, report the rest
	} else if err != nil {
		return nil, pathError(remote, err)
	}
	for _, c := range children {
		if err := vault.CheckName(c.Name); err != nil {
			g.fail(fmt.Errorf("%s: entry %q: %v; skipped", remote, c.Name, err))
			continue
		}
		if items, err = g.walk(ctx, vault.JoinPath(remote, c.Name), filepath.Join(local, c.Name), c, items); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func (g *getter) fail(err error) {
	g.mu.Lock()
	g.failed = append(g.failed, err)
	g.mu.Unlock()
}

// run makes directories, then downloads small files many at a time and
// large ones one at a time, as put does.
func (g *getter) run(ctx context.Context, items []getItem) error {
	var small, large, links []getItem
	g.dests = make(map[string]bool, len(items))
	for _, it := range items {
		g.dests[it.local] = true
	}
	for _, it := range items {
		switch {
		case it.linkOf != "":
			links = append(links, it)
		case it.node.IsDir():
			if err := os.MkdirAll(it.local, 0o755); err != nil {
				g.fail(err)
			}
		case it.node.IsFile() && it.node.Size() > int64(g.s.v.Layout().ChunkSize()):
			large = append(large, it)
		default:
			small = append(small, it)
		}
	}
	if err := transferAll(ctx, small, large, g.fetch); err != nil {
		return err
	}
	for _, it := range links {
		g.mu.Lock()
		ok := g.fetched[it.linkOf]
		g.mu.Unlock()
		if !ok {
			g.fail(fmt.Errorf("%s: not linked: %s, the file it is a hard link of, was not downloaded", it.remote, it.linkOf))
			continue
		}
		if err := linkLocal(it.linkOf, it.local); err != nil {
			g.fail(pathError(it.remote, err))
		}
	}
	// Directory modes last, so a read-only directory is filled first.
	for _, it := range items {
		if it.node.IsDir() && it.node.Name != "" {
			_ = os.Chmod(it.local, vault.ModeBits(it.node.Mode()))
		}
	}
	return nil
}

// fetch downloads one file or makes one symlink; failures are recorded.
func (g *getter) fetch(ctx context.Context, it getItem) {
	var err error
	if it.node.IsSymlink() {
		err = makeSymlink(it.node.Target, it.local)
	} else {
		err = g.s.v.Download(ctx, it.node, it.local, vault.DownloadOptions{
			Progress: g.prog, Limit: g.limit,
			Taken: func(p string) bool { return g.dests[p] },
			OnResume: func(done, total int64) {
				g.prog.Printf("resuming %s: %s of %s already downloaded", it.local, sizeString(done), sizeString(total))
			},
		})
	}
	if err != nil && ctx.Err() == nil {
		g.fail(pathError(it.remote, err))
	}
	if err == nil {
		g.mu.Lock()
		if g.fetched == nil {
			g.fetched = map[string]bool{}
		}
		g.fetched[it.local] = true
		g.mu.Unlock()
	}
}

// linkLocal makes local another name of the downloaded file first. A file
// already there is replaced atomically (linked under a temporary name, then
// renamed over it); a directory is not.
func linkLocal(first, local string) error {
	fi, err := os.Lstat(first)
	if err != nil {
		return err
	}
	st, err := os.Lstat(local)
	switch {
	case err == nil && os.SameFile(fi, st):
		return nil
	case err == nil && st.IsDir():
		return fmt.Errorf("%s exists and is a directory", local)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case err != nil:
		return os.Link(first, local)
	}
	tmp := filepath.Join(filepath.Dir(local), linkTempName(filepath.Base(local)))
	if err := os.Link(first, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, local); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// makeSymlink creates a symlink, replacing an existing symlink (never a
// file or directory) of the same name.
func makeSymlink(target, local string) error {
	if st, err := os.Lstat(local); err == nil {
		if st.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("%s exists and is not a symlink", local)
		}
		if old, _ := os.Readlink(local); old == target {
			return nil
		}
		if err := os.Remove(local); err != nil {
			return err
		}
	}
	return os.Symlink(target, local)
}
