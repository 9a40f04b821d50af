package main

import (
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal, which decides whether progress
// is drawn and whether a password may be asked for.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
