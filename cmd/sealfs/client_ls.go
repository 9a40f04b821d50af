package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/sealfs/sealfs/remote/vault"
)

// lsEntry is one line of `ls --json`: a stable, script-friendly record.
type lsEntry struct {
	Path       string    `json:"path"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Size       int64     `json:"size"`
	Mode       string    `json:"mode"`
	ModTime    time.Time `json:"mtime"`
	ID         string    `json:"id"`
	Generation uint64    `json:"generation,omitempty"`
	Target     string    `json:"target,omitempty"`
}

type lsOptions struct {
	long, recursive, json bool
}

func runLs(args []string) error {
	fl := newFlags("ls", "[-l] [-R] [--json] [PATH]")
	var o lsOptions
	fl.BoolVarP(&o.long, "long", "l", false, "long listing: mode, size, modification time")
	fl.BoolVarP(&o.recursive, "recursive", "R", false, "list subdirectories recursively")
	fl.BoolVar(&o.json, "json", false, "print a JSON array of entries")
	cf := addCommonFlags(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		return usagef("at most one PATH")
	}
	p := "/"
	if fl.NArg() == 1 {
		var err error
		if p, err = remotePath(fl.Arg(0)); err != nil {
			return err
		}
	}
	return withSession(cf, func(ctx context.Context, s *session) error {
		n, err := s.v.Resolve(ctx, p)
		if err != nil {
			return pathError(p, err)
		}
		w := bufio.NewWriter(os.Stdout)
		l := &lister{v: s.v, o: o, w: w}
		if n.IsDir() {
			err = l.dir(ctx, p, n, true)
		} else {
			l.print(p, n)
		}
		if o.json {
			if l.entries == nil {
				l.entries = []lsEntry{}
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(l.entries); err == nil {
				err = jerr
			}
		}
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		return err
	})
}

// lister prints a listing, collecting corrupt entries instead of stopping
// at the first: the listing shows what verified and then fails.
type lister struct {
	v       *vault.Vault
	o       lsOptions
	w       io.Writer
	entries []lsEntry
	bad     []error
}

func (l *lister) dir(ctx context.Context, p string, n *vault.Node, first bool) error {
	children, err := l.v.ReadDir(ctx, n.ID)
	var rde *vault.ReadDirError
	if errors.As(err, &rde) {
		l.bad = append(l.bad, fmt.Errorf("%s: %w", p, err))
	} else if err != nil {
		return pathError(p, err)
	}
	if l.o.recursive && !l.o.json {
		if !first {
			fmt.Fprintln(l.w)
		}
		fmt.Fprintf(l.w, "%s:\n", p)
	}
	for _, c := range children {
		l.print(vault.JoinPath(p, c.Name), c)
	}
	if l.o.recursive {
		for _, c := range children {
			if c.IsDir() {
				if err := l.dir(ctx, vault.JoinPath(p, c.Name), c, false); err != nil {
					return err
				}
			}
		}
	}
	if first && len(l.bad) > 0 {
		return errors.Join(l.bad...)
	}
	return nil
}

func (l *lister) print(p string, n *vault.Node) {
	name := n.Name
	if name == "" {
		name = p
	}
	if l.o.json {
		e := lsEntry{Path: p, Name: name, Type: typeName(n), Size: n.Size(), Mode: n.Mode().String(),
			ModTime: n.ModTime().UTC(), ID: n.ID.String(), Target: n.Target}
		if n.IsFile() {
			e.Generation = n.Attr.Generation
		}
		l.entries = append(l.entries, e)
		return
	}
	if !l.o.long {
		fmt.Fprintln(l.w, name)
		return
	}
	mt := n.ModTime()
	stamp := mt.Format("Jan _2 15:04")
	if time.Since(mt) > 180*24*time.Hour || mt.After(time.Now().Add(time.Hour)) {
		stamp = mt.Format("Jan _2  2006")
	}
	line := fmt.Sprintf("%s %3d %12s %s %s", n.Mode(), n.Nlink, strconv.FormatInt(n.Size(), 10), stamp, name)
	if n.IsSymlink() {
		line += " -> " + n.Target
	}
	fmt.Fprintln(l.w, line)
}
