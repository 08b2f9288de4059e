package oidcflow

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 500*int64(time.Millisecond))
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	withExtra := func(tok *oauth2.Token, m map[string]any) *oauth2.Token { return tok.WithExtra(m) }
	for _, tc := range []struct {
		name string
		tok  *oauth2.Token
		want int64 // unix ms
	}{
		{"expires_in_from_the_request_start", &oauth2.Token{AccessToken: "opaque", ExpiresIn: 60}, 1060_500},
		{"raw_expires_in_when_the_field_is_dropped", withExtra(&oauth2.Token{AccessToken: "opaque"}, map[string]any{"expires_in": float64(60)}), 1060_500},
		{"jwt_exp_truncated_to_the_second_caps_it", &oauth2.Token{AccessToken: jwt(`{"exp":1060}`), ExpiresIn: 60}, 1060_000},
		{"later_jwt_exp_does_not_extend_it", &oauth2.Token{AccessToken: jwt(`{"exp":9999}`), ExpiresIn: 60}, 1060_500},
		{"jwt_exp_alone", &oauth2.Token{AccessToken: jwt(`{"exp":1030}`)}, 1030_000},
		{"jwt_exp_not_a_number_ignored", &oauth2.Token{AccessToken: jwt(`{"exp":"1030"}`), ExpiresIn: 60}, 1060_500},
		{"jwt_exp_float_ignored", &oauth2.Token{AccessToken: jwt(`{"exp":1030.5}`), ExpiresIn: 60}, 1060_500},
		{"oversized_token_not_parsed", &oauth2.Token{AccessToken: jwt(`{"exp":1030,"x":"` + strings.Repeat("a", 20<<10) + `"}`), ExpiresIn: 60}, 1060_500},
		{"nothing_known", &oauth2.Token{AccessToken: "opaque"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tokenExpiry(start, tc.tok); got != tc.want {
				t.Fatalf("tokenExpiry = %d, want %d", got, tc.want)
			}
		})
	}
}
