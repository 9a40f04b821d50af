package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// transferProgress draws one restic-style bar (bytes, rate, ETA, files) on
// a terminal and implements vault.Progress. Off a terminal, or with
// --quiet, it draws nothing.
type transferProgress struct {
	p          *mpb.Progress
	bar        *mpb.Bar
	files      atomic.Int64
	totalFiles int64
	quiet      bool
	mu         sync.Mutex
}

// showBars reports whether progress may be drawn: both output streams on a
// terminal, so nothing is drawn into a pipe or a log.
func showBars(quiet bool) bool {
	return !quiet && term.IsTerminal(int(os.Stderr.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
}

func newTransferProgress(quiet bool, verb string, totalBytes int64, totalFiles int) *transferProgress {
	t := &transferProgress{totalFiles: int64(totalFiles), quiet: quiet}
	if !showBars(quiet) {
		return t
	}
	t.p = mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	// Created without a total so that it does not complete by itself when
	// the last byte is counted, before the last file is committed; Finish
	// completes it.
	t.bar = t.p.AddBar(0,
		mpb.PrependDecorators(
			decor.Name(verb+" "),
			decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf("%d/%d files ", t.files.Load(), t.totalFiles)
			}),
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
		),
		mpb.AppendDecorators(
			decor.Percentage(decor.WCSyncSpace),
			decor.AverageSpeed(decor.SizeB1024(0), " % .1f", decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), " done"),
		),
	)
	t.bar.SetTotal(totalBytes, false)
	return t
}

// AddBytes implements vault.Progress.
func (t *transferProgress) AddBytes(n int64) {
	if t.bar != nil && n > 0 {
		t.bar.IncrInt64(n)
	}
}

// AddFiles implements vault.Progress.
func (t *transferProgress) AddFiles(n int) { t.files.Add(int64(n)) }

// Printf prints a line above the bar, or on stderr when there is none;
// nothing with --quiet.
func (t *transferProgress) Printf(format string, a ...any) {
	if t.quiet {
		return
	}
	var w io.Writer = os.Stderr
	if t.p != nil {
		w = t.p
	}
	t.mu.Lock()
	fmt.Fprintf(w, format+"\n", a...)
	t.mu.Unlock()
}

// Finish completes the bar (ok) or leaves it where it stopped.
func (t *transferProgress) Finish(ok bool) {
	if t.p == nil {
		return
	}
	if ok {
		t.bar.SetTotal(-1, true)
	} else {
		t.bar.Abort(false)
	}
	t.p.Wait()
}

// sizeString formats a byte count for people: "412 MiB", "1.0 GiB".
func sizeString(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), 0
	for v >= 1024 && unit < 6 {
		v /= 1024
		unit++
	}
	suffix := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[unit]
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, suffix)
	}
	return fmt.Sprintf("%.0f %s", v, suffix)
}
