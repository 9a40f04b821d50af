package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader serves a certificate pair from files and swaps in a new pair on
// Reload, so renewing a certificate needs a SIGHUP, not a restart that drops
// every client. Handshakes read the current pair through an atomic pointer
// and never wait for a reload.
type Reloader struct {
	certFile, keyFile string
	mu                sync.Mutex // serializes Reload
	cert              atomic.Pointer[tls.Certificate]
}

// NewReloader loads the pair from certFile and keyFile.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the pair again. If it cannot be loaded (unreadable, a key
// that does not match, a certificate that is expired or not yet valid), the
// previous pair stays in service and the error says why: a botched renewal
// must not take the server off the air.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tlscert: load %s: %w", r.certFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("tlscert: %s: %w", r.certFile, err)
		}
	}
	now := time.Now()
	if now.After(cert.Leaf.NotAfter) {
		return fmt.Errorf("tlscert: %s expired at %s", r.certFile, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.Leaf.NotBefore) {
		return fmt.Errorf("tlscert: %s is not valid before %s", r.certFile, cert.Leaf.NotBefore.Format(time.RFC3339))
	}
	r.cert.Store(&cert)
	return nil
}

// GetCertificate returns the current pair; it is a tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Fingerprint returns the fingerprint of the pair in service, for logging
// after a reload and for showing to users who pin it.
func (r *Reloader) Fingerprint() string {
	return Fingerprint(r.cert.Load().Certificate[0])
}
