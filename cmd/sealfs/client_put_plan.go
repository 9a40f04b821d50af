package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sealfs/sealfs/remote/vault"
)

// plan resolves the destination with cp's rules and lists what to upload,
// directories before their contents.
func (p *putter) plan(ctx context.Context, srcs []string, dst string, mustBeDir, recursive bool) ([]putFile, error) {
	target, err := p.s.v.Resolve(ctx, dst)
	if err != nil && !vault.IsNotExist(err) {
		return nil, pathError(dst, err)
	}
	intoDir := err == nil && target.IsDir()
	if mustBeDir && !intoDir {
		// As with cp: a new directory may be named so, a file may not.
		st, serr := os.Stat(srcs[0])
		if err == nil || len(srcs) != 1 || serr != nil || !st.IsDir() {
			return nil, notADir(dst, err == nil)
		}
	}
	if len(srcs) > 1 && !intoDir {
		return nil, fmt.Errorf("%s: not an existing directory (required with several sources)", dst)
	}
	if intoDir {
		if err := p.listDir(ctx, dst, target); err != nil {
			return nil, err
		}
	} else {
		parent, _, err := p.s.v.ResolveParent(ctx, dst)
		if err != nil {
			return nil, pathError(dst, err)
		}
		if err := p.listDir(ctx, parentPath(dst), parent); err != nil {
			return nil, err
		}
	}
	var files []putFile
	for _, src := range srcs {
		info, err := os.Lstat(src)
		if err == nil && !recursive && info.Mode()&fs.ModeSymlink != 0 {
			// As cp without -r: a symlink named on the command line
			// stands for the file it points to.
			info, err = os.Stat(src)
		}
		if err != nil {
			return nil, err
		}
		root := dst
		if intoDir && !contentsOf(src) {
			base := filepath.Base(filepath.Clean(src))
			if err := vault.CheckName(base); err != nil {
				return nil, usagef("%s: %v", src, err)
			}
			root = vault.JoinPath(dst, base)
		}
		if !info.IsDir() {
			f, err := planEntry(src, root, info)
			if errors.Is(err, errSpecial) {
				p.fail(err) // the other sources still go
				continue
			}
			if err != nil {
				return nil, err
			}
			files = append(files, f)
			continue
		}
		if !recursive {
			return nil, fmt.Errorf("%s: is a directory (use -r to upload it and its contents)", src)
		}
		p.createsRoot = !intoDir && !contentsOf(src) && len(srcs) == 1
		err = filepath.WalkDir(src, func(local string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, local)
			if rel == "." && intoDir && contentsOf(src) {
				return nil // DST itself, which exists: only its contents go
			}
			remote := root
			if rel != "." {
				remote = vault.JoinPath(root, filepath.ToSlash(rel))
				if err := vault.CheckName(d.Name()); err != nil {
					return fmt.Errorf("%s: %v", local, err)
				}
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			f, err := planEntry(local, remote, info)
			if errors.Is(err, errSpecial) {
				p.fail(err) // a socket or FIFO in a tree: the rest still goes
				return nil
			}
			if err != nil {
				return err
			}
			files = append(files, f)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	markLinks(files)
	return files, nil
}

// markLinks points every further name of a local file with several hard
// links at the first one in the run.
func markLinks(files []putFile) {
	first := map[inodeKey]string{}
	for i := range files {
		f := &files[i]
		st, ok := f.info.Sys().(*syscall.Stat_t)
		if !ok || !f.info.Mode().IsRegular() || st.Nlink < 2 {
			continue
		}
		k := inodeKey{uint64(st.Dev), uint64(st.Ino)}
		if r, seen := first[k]; seen {
			f.linkOf = r
		} else {
			first[k] = f.remote
		}
	}
}

func planEntry(local, remote string, info fs.FileInfo) (putFile, error) {
	f := putFile{local: local, remote: remote, info: info}
	switch {
	case info.Mode().IsRegular(), info.IsDir():
	case info.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(local)
		if err != nil {
			return f, err
		}
		f.target = t
	default:
		return f, fmt.Errorf("%s: %w; not uploaded", local, errSpecial)
	}
	return f, nil
}

// errSpecial marks an entry put skips: a device, FIFO or socket holds no
// data to store.
var errSpecial = errors.New("not a regular file, directory or symlink")

// listDir records a remote directory's entries, so uploads into it know
// what exists without a lookup each.
func (p *putter) listDir(ctx context.Context, path string, n *vault.Node) error {
	children, err := p.s.v.ReadDir(ctx, n.ID)
	if err != nil {
		return pathError(path, err)
	}
	d := &remoteDir{node: n, children: make(map[string]*vault.Node, len(children))}
	for _, c := range children {
		d.children[c.Name] = c
	}
	p.dirs[path] = d
	return nil
}
