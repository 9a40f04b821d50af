// Command sealfs is the one binary of sealfs: the storage server (serve and
// the server admin commands), the file commands that work without a mount,
// and the FUSE mount. Exit status is 0 on success, 1 on failure and 2 on a
// usage error.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// version is set at build time by the Makefile (-X main.version=...).
var version = "dev"

// Exit statuses, part of the command-line contract scripts rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. run gets the arguments after the command name.
type command struct {
	summary string
	run     func(args []string) error
}

// commands is filled by the init functions of the files that implement them.
var commands = map[string]command{}

// usageError marks errors that are the caller's mistake: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// newFlags returns a flag set that reports errors to the caller instead of
// exiting, so every command exits through one place with the right status.
func newFlags(name, args string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sealfs %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs, turning flag errors into usage errors.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

func init() {
	commands["version"] = command{"print the version and the format version", runVersion}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sealfs COMMAND [ARGS...]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "sealfs: unknown command %q (see 'sealfs help')\n", args[0])
		return exitUsage
	}
	err := cmd.run(args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "sealfs %s: %s\n", args[0], strings.TrimSpace(ue.msg))
		return exitUsage
	default:
		fmt.Fprintf(os.Stderr, "sealfs %s: %s\n", args[0], err)
		return exitFailure
	}
}
