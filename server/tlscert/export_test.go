package tlscert

import (
	"net/netip"
	"time"
)

// GenerateForTest makes a self-signed pair with chosen validity, to test
// how expired or foreign certificates are handled.
func GenerateForTest(names []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	return generate(names, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, notBefore, notAfter)
}
