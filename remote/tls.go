package remote

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// FingerprintPrefix starts every certificate fingerprint, as `sealfs server
// fingerprint` prints it and as ssh shows host keys.
const FingerprintPrefix = "SHA256:"

// Trust says how the client authenticates the server. With neither field set
// the system's roots are used. A pinned fingerprint is the usual choice for a
// self-hosted server with a self-signed certificate: it needs no CA and
// detects a replaced certificate.
type Trust struct {
	// Fingerprint pins the leaf certificate: FingerprintPrefix + base64
	// (standard alphabet, no padding) of SHA-256 over its DER bytes.
	Fingerprint string
	// CAFile is a PEM file of CA certificates that replace the system roots.
	CAFile string
}

// Fingerprint returns the pin form of a certificate.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return FingerprintPrefix + base64.RawStdEncoding.EncodeToString(sum[:])
}

// ParseFingerprint checks and normalises a pin given by a person: the
// prefix is required (so a hex digest from another tool is not silently
// misread) and the digest must be 32 bytes.
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, FingerprintPrefix)
	if !ok {
		return "", fmt.Errorf("fingerprint %q does not start with %q (copy it from 'sealfs server fingerprint')", s, FingerprintPrefix)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q is not a base64 SHA-256 digest (copy it from 'sealfs server fingerprint')", s)
	}
	return FingerprintPrefix + base64.RawStdEncoding.EncodeToString(raw), nil
}

// FingerprintMismatchError means the server presented a certificate other
// than the pinned one: either it was replaced on purpose, or someone is
// intercepting the connection. Like ssh, the client refuses to continue.
type FingerprintMismatchError struct {
	Host string
	Want string
	Got  string
}

// Error implements error with a message meant for people.
func (e *FingerprintMismatchError) Error() string {
	return fmt.Sprintf("the certificate of %s has changed: pinned %s, presented %s", e.Host, e.Want, e.Got)
}

// UntrustedCertError means the certificate did not verify against the
// system roots or the CA file. Fingerprint lets an interactive client ask
// the user whether to pin it (trust on first use, as ssh does).
type UntrustedCertError struct {
	Host        string
	Fingerprint string // of the presented leaf; "" if none was presented
	Err         error
}

// Error implements error with a message meant for people.
func (e *UntrustedCertError) Error() string {
	return fmt.Sprintf("the certificate of %s is not trusted: %v", e.Host, e.Err)
}

// Unwrap exposes the verification error.
func (e *UntrustedCertError) Unwrap() error { return e.Err }

// tlsConfig builds the client's TLS configuration for trust t.
func tlsConfig(t Trust, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case t.Fingerprint != "":
		want, err := ParseFingerprint(t.Fingerprint)
		if err != nil {
			return nil, err
		}
		// Chain verification is replaced, never dropped: VerifyConnection
		// runs on every handshake, including resumed sessions, and accepts
		// exactly the pinned leaf.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return &FingerprintMismatchError{Host: host, Want: want, Got: "no certificate"}
			}
			got := Fingerprint(cs.PeerCertificates[0])
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				return &FingerprintMismatchError{Host: host, Want: want, Got: got}
			}
			return nil
		}
	case t.CAFile != "":
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// classifyTLSErr turns a handshake failure into one of the typed trust
// errors, or returns nil when err is not about trust.
func classifyTLSErr(err error, host string) error {
	var fm *FingerprintMismatchError
	if errors.As(err, &fm) {
		return fm
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		ue := &UntrustedCertError{Host: host, Err: cv.Err}
		if len(cv.UnverifiedCertificates) > 0 {
			ue.Fingerprint = Fingerprint(cv.UnverifiedCertificates[0])
		}
		return ue
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return &UntrustedCertError{Host: host, Err: err}
	}
	return nil
}
