package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names of the self-signed pair inside the directory given to
// EnsureSelfSigned.
const (
	CertFileName = "tls-cert.pem"
	KeyFileName  = "tls-key.pem"
)

const (
	// selfSignedCN marks certificates EnsureSelfSigned made, the only ones
	// it will ever replace; an operator's own certificate is left alone.
	selfSignedCN = "sealfs self-signed"
	// validity is long because clients pin the certificate: every new one
	// means re-pinning on every client.
	validity = 10 * 365 * 24 * time.Hour
	// renewBefore is how close to expiry a self-signed certificate is
	// replaced, rather than served until clients reject it.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers clients whose clocks run a little behind.
	backdate = time.Hour
)

// EnsureSelfSigned returns the self-signed certificate and key files in
// dir, creating them on first use: ECDSA P-256, valid ten years, with
// subject alternative names for localhost, 127.0.0.1, ::1 and every given
// host (IP addresses as IP SANs, names as DNS SANs; wildcard listen
// addresses such as 0.0.0.0 are skipped, since no client dials them).
//
// An existing pair is reused. It is replaced, and generated reported true,
// when a requested host is missing from it (the new certificate keeps the
// old names too, so alternating configurations do not flip-flop), when it
// expires within 30 days, or when the key does not match the certificate
// (a crash between writing the two). A new certificate has a new
// fingerprint, which clients must re-pin, so callers should log it. Only a
// certificate this function made is ever replaced; anything else in its
// place is an error.
func EnsureSelfSigned(dir string, hosts []string) (certFile, keyFile string, generated bool, err error) {
	dnsNames, ips, err := normalizeHosts(hosts)
	if err != nil {
		return "", "", false, err
	}
	certFile = filepath.Join(dir, CertFileName)
	keyFile = filepath.Join(dir, KeyFileName)

	old, err := loadOwn(certFile, keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", "", false, err
	case old.covers(dnsNames, ips) && time.Until(old.leaf.NotAfter) > renewBefore && old.keyMatches:
		return certFile, keyFile, false, nil
	default:
		dnsNames = union(dnsNames, old.leaf.DNSNames)
		for _, ip := range old.leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				ips = union(ips, []netip.Addr{a.Unmap()})
			}
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", false, fmt.Errorf("tlscert: %w", err)
	}
	now := time.Now()
	certPEM, keyPEM, err := generate(dnsNames, ips, now.Add(-backdate), now.Add(validity))
	if err != nil {
		return "", "", false, err
	}
	// Key first: a crash in between leaves a mismatched pair, which the next
	// start recognizes and replaces.
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", false, err
	}
	if err := writeAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", false, err
	}
	return certFile, keyFile, true, nil
}

// existing is a certificate found on disk that EnsureSelfSigned made.
type existing struct {
	leaf       *x509.Certificate
	keyMatches bool
}

// loadOwn reads the pair, returning fs.ErrNotExist if there is no
// certificate and an error if the certificate is not one of ours. A key
// without a certificate is what a crash on first start leaves behind, and a
// missing or foreign key beside our certificate is a pair to replace.
func loadOwn(certFile, keyFile string) (*existing, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("tlscert: %s holds no certificate; move it away to have a new one made", certFile)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tlscert: %s: %w", certFile, err)
	}
	// CheckSignatureFrom would demand a CA; a self-signed leaf is checked
	// against its own key directly.
	if leaf.Subject.CommonName != selfSignedCN ||
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) != nil {
		return nil, fmt.Errorf("tlscert: %s is not a certificate sealfs made; refusing to replace it", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	return &existing{leaf: leaf, keyMatches: err == nil}, nil
}

func (e *existing) covers(dnsNames []string, ips []netip.Addr) bool {
	for _, name := range dnsNames {
		if !slices.Contains(e.leaf.DNSNames, name) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(e.leaf.IPAddresses, func(have net.IP) bool { return have.Equal(ip.AsSlice()) }) {
			return false
		}
	}
	return true
}

// generate makes a new key and self-signed certificate, both PEM-encoded.
func generate(dnsNames []string, ips []netip.Addr, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)), // never zero
		Subject:               pkix.Name{CommonName: selfSignedCN, Organization: []string{"sealfs"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlscert: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// normalizeHosts splits hosts into DNS names and IP addresses, adds the
// loopback names every server answers to, and rejects what cannot be a SAN
// (a host:port, say) instead of minting a certificate no client matches.
func normalizeHosts(hosts []string) ([]string, []netip.Addr, error) {
	dnsNames := []string{"localhost"}
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("tlscert: host %q: an address with a zone cannot be in a certificate", h)
			}
			if ip.IsUnspecified() {
				continue // a wildcard listen address; no client dials it
			}
			ips = union(ips, []netip.Addr{ip.Unmap()})
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(h), ".")
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("tlscert: host %q is neither an IP address nor a DNS name", h)
		}
		dnsNames = union(dnsNames, []string{name})
	}
	return dnsNames, ips, nil
}

// validDNSName accepts lower-case LDH names with an optional leading "*."
// label, which is all a certificate SAN should carry.
func validDNSName(name string) bool {
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// union appends the elements of add missing from set, keeping order.
func union[T comparable](set, add []T) []T {
	for _, v := range add {
		if !slices.Contains(set, v) {
			set = append(set, v)
		}
	}
	return set
}

// writeAtomic replaces path with data: temporary file, fsync, rename,
// directory fsync. A reader, or a restart after a crash, sees the old file
// or the new one whole.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("tlscert: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tlscert: write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tlscert: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tlscert: sync %s: %w", dir, err)
	}
	return nil
}
