package oidcflow

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseJWKS: whatever key set the provider serves, parsing never panics,
// and a set it accepts holds only unique, valid public signing keys, RSA of
// at least 2048 bits (T40).
func FuzzParseJWKS(f *testing.F) {
	for _, s := range []string{
		`{"keys":[]}`, `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AAAA","y":"AAAA"}]}`,
		`{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}`, `{"keys":[{"kty":"RSA","kid":"a"},{"kty":"RSA","kid":"a"}]}`,
		`{"keys":[{"kty":"RSA","use":"enc","kid":"e"}]}`, `{"keys":null}`, `[]`, `not json`, `{"keys":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseJWKS(body)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if kid == "" || k.KeyID != kid || !k.IsPublic() || !k.Valid() {
				t.Fatalf("accepted key %q: %+v", kid, k)
			}
			if pk, ok := k.Key.(*rsa.PublicKey); ok && pk.N.BitLen() < minRSABits {
				t.Fatalf("accepted a %d-bit RSA key", pk.N.BitLen())
			}
		}
	})
}

// FuzzLimitedBody: a body within the limit reads back whole; a longer one
// fails with errResponseTooLarge, never hands out more than the limit, and
// never pulls more than one byte past it from the connection, however the
// reader and the source split their reads (T40, T60).
func FuzzLimitedBody(f *testing.F) {
	f.Add(uint16(16), uint16(16), uint8(7), false)
	f.Add(uint16(16), uint16(17), uint8(16), true)
	f.Add(uint16(1), uint16(0), uint8(1), false)
	f.Add(uint16(1024), uint16(4096), uint8(255), true)
	f.Add(uint16(0), uint16(1), uint8(1), false)
	f.Fuzz(func(t *testing.T, limit, size uint16, chunk uint8, oneByte bool) {
		body := bytes.Repeat([]byte{'x'}, int(size))
		src := &countingReader{r: bytes.NewReader(body)}
		var rc io.Reader = src
		if oneByte {
			rc = iotest.OneByteReader(src)
		}
		lb := &limitedBody{rc: io.NopCloser(rc), left: int64(limit)}
		var got []byte
		buf := make([]byte, max(int(chunk), 1))
		var err error
		for range 1 << 17 {
			var n int
			n, err = lb.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		switch {
		case int(size) <= int(limit):
			if !errors.Is(err, io.EOF) || len(got) != int(size) {
				t.Fatalf("a %d-byte body under a %d limit: %d bytes, %v", size, limit, len(got), err)
			}
		case !errors.Is(err, errResponseTooLarge) || len(got) > int(limit):
			t.Fatalf("a %d-byte body over a %d limit: %d bytes, %v", size, limit, len(got), err)
		}
		if src.n > int(limit)+1 {
			t.Fatalf("pulled %d bytes from the connection for a %d limit", src.n, limit)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzJWTExpiry: the unverified exp of an access token is read only from a
// plain positive integer, and never panics on what the provider sends.
func FuzzJWTExpiry(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9.", "a.eyJleHAiOiIxNzAwMDAwMDAwIn0.c", "a.eyJleHAiOjEuNWV9.c",
		"a.eyJleHAiOjFlMzB9.c", "a.eyJleHAiOi0xfQ.c", "opaque-token", "....", strings.Repeat("a.", 9000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		ms, ok := jwtExpiry(tok)
		if ok && (ms <= 0 || ms%1000 != 0) {
			t.Fatalf("jwtExpiry(%q) = %d", tok, ms)
		}
	})
}
