package tlscert_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/tlscert"
)

func readLeaf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", certFile)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func hasIP(leaf *x509.Certificate, s string) bool {
	return slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP(s)) })
}

func ensure(t *testing.T, dir string, hosts ...string) (string, string, bool) {
	t.Helper()
	certFile, keyFile, generated, err := tlscert.EnsureSelfSigned(dir, hosts)
	if err != nil {
		t.Fatalf("EnsureSelfSigned(%v): %v", hosts, err)
	}
	return certFile, keyFile, generated
}

func TestEnsureSelfSignedCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	certFile, keyFile, generated := ensure(t, dir, "sealfs.example.org", "10.1.2.3", "[2001:db8::5]", "Upper.Example.COM.")
	if !generated {
		t.Error("first call did not report a new certificate")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	leaf := readLeaf(t, certFile)
	for _, name := range []string{"localhost", "sealfs.example.org", "upper.example.com"} {
		if !slices.Contains(leaf.DNSNames, name) {
			t.Errorf("DNS SANs %v lack %s", leaf.DNSNames, name)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.1.2.3", "2001:db8::5"} {
		if !hasIP(leaf, ip) {
			t.Errorf("IP SANs %v lack %s", leaf.IPAddresses, ip)
		}
	}
	if slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return net.ParseIP(strings.Trim(n, "[]")) != nil }) {
		t.Errorf("an IP address ended up as a DNS SAN: %v", leaf.DNSNames)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digital signature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want server auth", leaf.ExtKeyUsage)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 9*365*24*time.Hour {
		t.Errorf("validity is only %v", life)
	}
	if time.Now().Before(leaf.NotBefore) {
		t.Error("certificate not yet valid")
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v is not a large random number", leaf.SerialNumber)
	}
	if leaf.IsCA {
		t.Error("a leaf certificate claims to be a CA")
	}
}

func TestEnsureSelfSignedReusesAndExtends(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := ensure(t, dir, "a.example")
	fp1, _ := tlscert.FingerprintFile(certFile)
	first := readLeaf(t, certFile)

	for _, hosts := range [][]string{{"a.example"}, nil, {"localhost", "127.0.0.1", " "}, {"0.0.0.0", "::"}} {
		if _, _, generated := ensure(t, dir, hosts...); generated {
			t.Errorf("hosts %q already covered, but the certificate was regenerated", hosts)
		}
	}
	if fp, _ := tlscert.FingerprintFile(certFile); fp != fp1 {
		t.Fatal("reusing the pair changed the fingerprint")
	}

	if _, _, generated := ensure(t, dir, "b.example", "192.0.2.7"); !generated {
		t.Fatal("a new host did not regenerate the certificate")
	}
	fp2, _ := tlscert.FingerprintFile(certFile)
	leaf := readLeaf(t, certFile)
	if fp2 == fp1 || leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the regenerated certificate has the old fingerprint or serial")
	}
	if !slices.Contains(leaf.DNSNames, "a.example") || !slices.Contains(leaf.DNSNames, "b.example") || !hasIP(leaf, "192.0.2.7") {
		t.Errorf("regenerated SANs %v %v lack old or new hosts", leaf.DNSNames, leaf.IPAddresses)
	}
	// Going back to the first configuration must not flip-flop.
	if _, _, generated := ensure(t, dir, "a.example"); generated {
		t.Error("returning to an earlier host list regenerated the certificate")
	}
}

func TestEnsureSelfSignedRejectsBadHosts(t *testing.T) {
	for _, h := range []string{"example.org:443", "a b", "under_score.example", "-lead.example", "fe80::1%eth0", "http://x"} {
		if _, _, _, err := tlscert.EnsureSelfSigned(t.TempDir(), []string{h}); err == nil {
			t.Errorf("host %q was accepted", h)
		}
	}
}

func TestEnsureSelfSignedRepairsPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := ensure(t, dir)
	// A crash between writing key and certificate leaves this state.
	_, otherKey, err := tlscert.GenerateForTest([]string{"localhost"}, time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, otherKey, 0o600)
	if _, _, generated := ensure(t, dir); !generated {
		t.Fatal("a mismatched pair was not replaced")
	}
	os.Remove(keyFile)
	if _, _, generated := ensure(t, dir); !generated {
		t.Fatal("a missing key was not replaced")
	}
	os.Remove(certFile)
	if _, _, generated := ensure(t, dir); !generated {
		t.Fatal("a key without certificate was not replaced")
	}
}

func TestEnsureSelfSignedRenewsExpiring(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := tlscert.GenerateForTest([]string{"localhost"}, time.Now().Add(-time.Hour), time.Now().Add(10*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, tlscert.CertFileName), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, tlscert.KeyFileName), keyPEM, 0o600)
	certFile, _, generated := ensure(t, dir)
	if !generated {
		t.Fatal("a certificate expiring in 10 days was kept")
	}
	if leaf := readLeaf(t, certFile); time.Until(leaf.NotAfter) < 365*24*time.Hour {
		t.Fatalf("renewed certificate expires %v", leaf.NotAfter)
	}
}

func TestEnsureSelfSignedLeavesForeignCertificate(t *testing.T) {
	dir := t.TempDir()
	foreign := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	certFile := filepath.Join(dir, tlscert.CertFileName)
	os.WriteFile(certFile, foreign, 0o644)
	if _, _, _, err := tlscert.EnsureSelfSigned(dir, nil); err == nil {
		t.Fatal("an unparsable certificate was replaced silently")
	}
	if got, _ := os.ReadFile(certFile); string(got) != string(foreign) {
		t.Fatal("the foreign certificate file was modified")
	}
}

func TestFingerprint(t *testing.T) {
	certFile, _, _ := ensure(t, t.TempDir())
	leaf := readLeaf(t, certFile)
	fp := tlscert.Fingerprint(leaf.Raw)
	sum := sha256.Sum256(leaf.Raw)
	if want := "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]); fp != want {
		t.Fatalf("Fingerprint = %s, want %s", fp, want)
	}
	if !regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q has the wrong shape", fp)
	}
	if got, err := tlscert.FingerprintFile(certFile); err != nil || got != fp {
		t.Fatalf("FingerprintFile = %s, %v", got, err)
	}
	if _, err := tlscert.FingerprintFile(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("FingerprintFile of a missing file succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("no pem here"), 0o644)
	if _, err := tlscert.FingerprintFile(empty); err == nil {
		t.Error("FingerprintFile of a file without a certificate succeeded")
	}
}
