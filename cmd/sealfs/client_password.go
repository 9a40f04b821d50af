package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/term"
)

// passwordSources explains every way to give a password, for messages.
const passwordSources = "pass --password-file FILE, set SEALFS_PASSWORD_FILE or SEALFS_PASSWORD_COMMAND, or run the command on a terminal"

// trimNewline drops one trailing line ending, as files and commands end
// their output with one that is not part of the password.
func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// readPasswordFile reads a password from a file.
func readPasswordFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the password file: %w", err)
	}
	pw := trimNewline(b)
	if len(pw) == 0 {
		return nil, fmt.Errorf("the password file %s is empty", path)
	}
	return pw, nil
}

// getPassword returns the account password from, in order: the
// --password-file flag, $SEALFS_PASSWORD_FILE, $SEALFS_PASSWORD_COMMAND
// (run with sh -c, like restic), or the terminal without echo.
func getPassword(flagFile, prompt string) ([]byte, error) {
	if flagFile != "" {
		return readPasswordFile(flagFile)
	}
	if f := os.Getenv("SEALFS_PASSWORD_FILE"); f != "" {
		return readPasswordFile(f)
	}
	if c := os.Getenv("SEALFS_PASSWORD_COMMAND"); c != "" {
		cmd := exec.Command("sh", "-c", c)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("SEALFS_PASSWORD_COMMAND failed: %w", err)
		}
		pw := trimNewline(out)
		if len(pw) == 0 {
			return nil, errors.New("SEALFS_PASSWORD_COMMAND printed an empty password")
		}
		return pw, nil
	}
	return askPassword(prompt)
}

// askPassword reads a password from the terminal without echo.
func askPassword(prompt string) ([]byte, error) {
	tty, closeTTY, err := openTerminal()
	if err != nil {
		return nil, fmt.Errorf("no password given and no terminal to ask on: %s", passwordSources)
	}
	defer closeTTY()
	fmt.Fprint(os.Stderr, prompt)
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

// getNewPassword returns the password of a new account: from the usual
// sources, or asked twice on the terminal so a typo does not lock the
// account.
func getNewPassword(flagFile, what string) ([]byte, error) {
	if flagFile != "" || os.Getenv("SEALFS_PASSWORD_FILE") != "" || os.Getenv("SEALFS_PASSWORD_COMMAND") != "" {
		return getPassword(flagFile, "")
	}
	return askNewPassword(what)
}

// askNewPassword asks for a new password twice on the terminal.
func askNewPassword(what string) ([]byte, error) {
	pw, err := askPassword(fmt.Sprintf("New password for %s: ", what))
	if err != nil {
		return nil, err
	}
	again, err := askPassword("Repeat the new password: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the two passwords differ; nothing was changed")
	}
	return pw, nil
}

// openTerminal returns the controlling terminal: standard input when it is
// one, else /dev/tty (so a password can be asked while input is piped).
func openTerminal() (*os.File, func(), error) {
	if term.IsTerminal(int(os.Stdin.Fd())) {
		return os.Stdin, func() {}, nil
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	if !term.IsTerminal(int(f.Fd())) {
		f.Close()
		return nil, nil, errors.New("/dev/tty is not a terminal")
	}
	return f, func() { f.Close() }, nil
}

// interactive reports whether a person can answer questions.
func interactive() bool {
	_, closeTTY, err := openTerminal()
	if err != nil {
		return false
	}
	closeTTY()
	return true
}

// askYesNo asks a yes/no question on the terminal; only "yes" is yes, as
// ssh requires for a new host key.
func askYesNo(question string) (bool, error) {
	tty, closeTTY, err := openTerminal()
	if err != nil {
		return false, err
	}
	defer closeTTY()
	r := bufio.NewReader(tty)
	for {
		fmt.Fprint(os.Stderr, question+" (yes/no) ")
		line, err := r.ReadString('\n')
		if err != nil {
			return false, err
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "yes":
			return true, nil
		case "no", "":
			return false, nil
		}
		fmt.Fprintln(os.Stderr, "Please type 'yes' or 'no'.")
	}
}
