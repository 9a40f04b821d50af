package blob

import "os"

// SetWriteHook replaces how l writes temporary files, so tests can inject
// write errors a real disk will not produce on demand.
func SetWriteHook(l *Local, write func(f *os.File, p []byte) (int, error)) {
	l.write = write
}
