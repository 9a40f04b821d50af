package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

func init() {
	commands["ls"] = command{"list a remote directory", runLs}
	commands["stat"] = command{"show a remote file's attributes", runStat}
	commands["mkdir"] = command{"create remote directories", runMkdir}
	commands["rm"] = command{"remove remote files and directories", runRm}
	commands["mv"] = command{"move or rename a remote file or directory", runMv}
	commands["cat"] = command{"write a remote file to standard output", runCat}
}

// remotePath checks and cleans a remote path argument: a usage error names
// the argument and what is wrong with it.
func remotePath(p string) (string, error) {
	clean, err := vault.CleanPath(p)
	if err != nil {
		return "", usagef("remote path %q: %v", p, err)
	}
	return clean, nil
}

// dirOnly reports whether a destination as typed names a directory only,
// with a trailing slash, as "/backup/" does for cp and mv: the contents go
// into it, and a file of that name is never replaced.
func dirOnly(arg string) bool {
	return len(arg) > 1 && strings.HasSuffix(arg, "/")
}

// notADir is the error for a destination written as a directory that is
// not one.
func notADir(dst string, exists bool) error {
	if exists {
		return fmt.Errorf("%s/: not a directory (written with a trailing slash, the destination must be an existing directory)", dst)
	}
	return fmt.Errorf("%s/: no such directory (written with a trailing slash, the destination must be an existing directory)", dst)
}

// pathError gives an error the remote path it is about, unless it already
// names one.
func pathError(p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return fmt.Errorf("%s: %w", p, err)
}

func runMkdir(args []string) error {
	fl := newFlags("mkdir", "[-p] PATH...")
	parents := fl.BoolP("parents", "p", false, "create missing parents; existing directories are fine")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	paths, err := remotePaths(fl.Args(), 1)
	if err != nil {
		return err
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		for _, p := range paths {
			if *parents {
				if _, err := s.v.MkdirAll(ctx, p, 0o755); err != nil {
					return pathError(p, err)
				}
				continue
			}
			dir, name, err := s.v.ResolveParent(ctx, p)
			if err != nil {
				return pathError(p, err)
			}
			if _, err := s.v.Mkdir(ctx, dir.ID, name, 0o755); err != nil {
				return pathError(p, err)
			}
		}
		return nil
	})
}

// remotePaths cleans every argument, requiring at least min of them.
func remotePaths(args []string, min int) ([]string, error) {
	if len(args) < min {
		return nil, usagef("at least %d remote path(s) required", min)
	}
	out := make([]string, len(args))
	for i, a := range args {
		p, err := remotePath(a)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// withSession opens the vault and runs f under a signal-aware context,
// explaining the error it returns.
func withSession(cf *commonFlags, f func(ctx context.Context, s *session) error) error {
	ctx, stop := signalContext()
	defer stop()
	s, err := openSession(ctx, cf)
	if err != nil {
		return err
	}
	defer s.c.Close()
	return explain(f(ctx, s), s.cfg)
}

func runRm(args []string) error {
	fl := newFlags("rm", "[-r] PATH...")
	recursive := fl.BoolP("recursive", "r", false, "remove directories and everything in them")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	paths, err := remotePaths(fl.Args(), 1)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if p == "/" {
			return usagef("refusing to remove the root directory")
		}
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		for _, p := range paths {
			n, err := s.v.Resolve(ctx, p)
			if err != nil {
				return pathError(p, err)
			}
			if n.IsDir() && !*recursive {
				return fmt.Errorf("%s: is a directory (use -r to remove it and its contents)", p)
			}
			if err := s.v.RemoveAll(ctx, n); err != nil {
				return pathError(p, err)
			}
		}
		return nil
	})
}

func runMv(args []string) error {
	fl := newFlags("mv", "SRC DST")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	paths, err := remotePaths(fl.Args(), 2)
	if err != nil {
		return err
	}
	if len(paths) != 2 {
		return usagef("exactly SRC and DST are required")
	}
	src, dst := paths[0], paths[1]
	if src == "/" {
		return usagef("the root directory cannot be moved")
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		n, err := s.v.Resolve(ctx, src)
		if err != nil {
			return pathError(src, err)
		}
		// Like mv: onto an existing directory means into it.
		target, err := s.v.Resolve(ctx, dst)
		var dir *vault.Node
		var name string
		if dirOnly(fl.Arg(1)) && (err != nil || !target.IsDir()) {
			if err != nil && !vault.IsNotExist(err) {
				return pathError(dst, err)
			}
			if err == nil || !n.IsDir() { // a directory may take the new name
				return notADir(dst, err == nil)
			}
		}
		switch {
		case err == nil && target.IsDir():
			dir, name = target, n.Name
			dst = vault.JoinPath(dst, name)
		case err == nil || vault.IsNotExist(err):
			if dir, name, err = s.v.ResolveParent(ctx, dst); err != nil {
				return pathError(dst, err)
			}
		default:
			return pathError(dst, err)
		}
		if dir.ID == n.Parent && name == n.Name {
			return nil
		}
		if err := s.v.Rename(ctx, n, dir.ID, name, wire.RenameReplace, nil); err != nil {
			if errors.Is(err, syscall.EINVAL) {
				return fmt.Errorf("cannot move %s into itself (%s)", src, dst)
			}
			return pathError(dst, err)
		}
		return nil
	})
}

func runCat(args []string) error {
	fl := newFlags("cat", "PATH...")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	paths, err := remotePaths(fl.Args(), 1)
	if err != nil {
		return err
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		w := bufio.NewWriterSize(os.Stdout, 1<<20)
		for _, p := range paths {
			n, err := s.v.Resolve(ctx, p)
			if err != nil {
				return pathError(p, err)
			}
			if n.IsDir() {
				return fmt.Errorf("%s: is a directory", p)
			}
			if !n.IsFile() {
				return fmt.Errorf("%s: not a regular file", p)
			}
			f, err := s.v.OpenFile(ctx, n)
			if err != nil {
				return pathError(p, err)
			}
			if err := s.v.WriteTo(ctx, f, w, vault.ReadOptions{}); err != nil {
				w.Flush()
				return pathError(p, err)
			}
		}
		return w.Flush()
	})
}

func runStat(args []string) error {
	fl := newFlags("stat", "PATH...")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	paths, err := remotePaths(fl.Args(), 1)
	if err != nil {
		return err
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		for _, p := range paths {
			n, err := s.v.Resolve(ctx, p)
			if err != nil {
				return pathError(p, err)
			}
			fmt.Printf("  Path: %s\n  Type: %s\n  Size: %d\n  Mode: %s\n Mtime: %s\n",
				p, typeName(n), n.Size(), n.Mode(), n.ModTime().Format("2006-01-02 15:04:05.000000000 -0700"))
			if n.IsSymlink() {
				fmt.Printf("Target: %s\n", n.Target)
			}
			fmt.Printf("    ID: %s\nVersion: %d  Generation: %d  Links: %d  Stored: %d bytes sealed\n",
				n.ID, n.Version, n.Attr.Generation, n.Nlink, n.Stored)
		}
		return nil
	})
}

func typeName(n *vault.Node) string {
	switch {
	case n.IsDir():
		return "directory"
	case n.IsSymlink():
		return "symlink"
	}
	return "file"
}

// parentPath returns the directory part of a clean remote path.
func parentPath(p string) string { return path.Dir(p) }
