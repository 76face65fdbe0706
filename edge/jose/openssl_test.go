//go:build openssl && cgo

package jose

import "testing"

// TestOpenSSLBackendSelected guards the build wiring: with the tag, RSA and
// P-256 keys must really go through libcrypto, or the cross-checks test
// nothing.
func TestOpenSSLBackendSelected(t *testing.T) {
	f := keys(t)
	if Backend != "openssl" {
		t.Fatalf("Backend = %q", Backend)
	}
	if _, ok := f.rs.signer.(*opensslRSA); !ok {
		t.Fatalf("RS256 signer is %T", f.rs.signer)
	}
	if _, ok := f.es.signer.(*opensslEC); !ok {
		t.Fatalf("ES256 signer is %T", f.es.signer)
	}
	if _, ok := f.rsGo.signer.(*opensslRSA); ok {
		t.Fatal("opaque signer was replaced")
	}
	if _, ok := f.esGo.signer.(*opensslEC); ok {
		t.Fatal("opaque EC signer was replaced")
	}
}
