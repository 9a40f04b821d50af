// Package tlscert gives the server its TLS: a self-signed certificate made
// on first start for deployments without a public name (clients pin its
// fingerprint instead of trusting a CA), ACME certificates for those with
// one, a reloader so a renewed certificate takes effect on SIGHUP without a
// restart, and one restrictive tls.Config for all of them.
//
// Fingerprints have the form "SHA256:" followed by the unpadded standard
// base64 of the SHA-256 of the leaf certificate's DER, as ssh shows host
// keys, so operators can compare them by eye and paste them into clients.
package tlscert

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Fingerprint returns the pinning fingerprint of a DER certificate.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// FingerprintFile returns the fingerprint of the first certificate in a PEM
// file: the leaf, in a chain file.
func FingerprintFile(certFile string) (string, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return "", fmt.Errorf("tlscert: %w", err)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return "", fmt.Errorf("tlscert: no certificate in %s", certFile)
		}
		if block.Type == "CERTIFICATE" {
			return Fingerprint(block.Bytes), nil
		}
	}
}

// VerifyFingerprint returns a tls.Config.VerifyPeerCertificate function that
// accepts exactly the leaf certificate with the given fingerprint. It is
// meant for clients of a self-signed server, with InsecureSkipVerify set:
// the pin then replaces CA and host name checks, and is stricter than both.
func VerifyFingerprint(want string) func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("tlscert: server sent no certificate")
		}
		got := Fingerprint(rawCerts[0])
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			return fmt.Errorf("tlscert: server certificate %s does not match the pinned %s", got, want)
		}
		return nil
	}
}

// ServerConfig returns the server's TLS configuration around getCert: TLS
// 1.2 at least, and for TLS 1.2 only forward-secret AEAD suites (ECDHE with
// AES-GCM or ChaCha20-Poly1305; TLS 1.3 suites are all of that kind and not
// configurable). RSA variants stay so that an operator's RSA certificate
// works. Curves are left to Go, which prefers the post-quantum hybrid.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: getCert,
	}
}

// ACMEConfig returns a TLS configuration that obtains and renews a
// certificate for domain from Let's Encrypt, caching account and
// certificates in cacheDir (created 0700; keep it under the data directory
// so renewals survive restarts and stay within rate limits). Only domain is
// served: a handshake for any other name fails before the CA is contacted,
// so scanners cannot make the server request certificates.
//
// The handler answers HTTP-01 challenges and redirects everything else to
// HTTPS; serve it on port 80. TLS-ALPN-01 works on the TLS port without it.
// Calling ACMEConfig accepts the CA's terms of service on the operator's
// behalf, which configuring a domain is taken to mean.
func ACMEConfig(domain, cacheDir string) (*tls.Config, http.Handler, error) {
	name := strings.TrimSuffix(strings.ToLower(domain), ".")
	_, ipErr := netip.ParseAddr(name)
	if ipErr == nil || !validDNSName(name) || strings.HasPrefix(name, "*.") || !strings.Contains(name, ".") {
		return nil, nil, fmt.Errorf("tlscert: %q is not a domain name ACME can issue a certificate for", domain)
	}
	if cacheDir == "" {
		return nil, nil, errors.New("tlscert: ACME needs a cache directory")
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(name),
		Cache:      autocert.DirCache(cacheDir),
	}
	cfg := ServerConfig(m.GetCertificate)
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	return cfg, m.HTTPHandler(nil), nil
}
