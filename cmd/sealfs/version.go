package main

import (
	"fmt"
	"runtime"

	"github.com/sealfs/sealfs/crypto"
)

func runVersion(args []string) error {
	fs := newFlags("version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments")
	}
	fmt.Printf("sealfs %s\nformat version %d\n%s %s/%s\n", version, crypto.FormatVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
