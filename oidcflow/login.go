package oidcflow

import (
	"fmt"
	"net/http"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// login answers GET <prefix>/login?returnUrl=…: it stores a pending login
// (state → nonce, PKCE verifier, returnUrl, browser binding), hands the
// browser the login-transaction cookie and sends it to the provider. It
// never touches an existing session (T16): a cross-site /login costs the
// user nothing.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	d, err := h.provider.get()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if len(q["returnUrl"]) > 1 {
		return fmt.Errorf("%w: returnUrl given more than once", ErrInvalidReturnURL)
	}
	// Without a returnUrl the browser goes back to its own app, not to
	// whichever app owns "/".
	returnURL := h.home
	if raw := q.Get("returnUrl"); raw != "" {
		if returnURL, err = ValidateReturnURLFor(raw, h.origins); err != nil {
			return err
		}
	}
	params, err := parseLoginParams(q)
	if err != nil {
		return err
	}
	var state, nonce, verifier, binding string
	for _, v := range []struct {
		dst  *string
		what string
	}{{&state, "state"}, {&nonce, "nonce"}, {&verifier, "pkce verifier"}, {&binding, "login cookie"}} {
		if *v.dst, err = randomString(h.rand, v.what); err != nil {
			return fmt.Errorf("start login: %w", err)
		}
	}
	ls := &sessionpb.LoginState{
		Nonce:           nonce,
		CodeVerifier:    verifier,
		ReturnUrl:       returnURL,
		CreatedAtUnixMs: h.now().UnixMilli(),
	}
	params.remember(ls)
	var dpopOpts []oauth2.AuthCodeOption
	if h.cfg.DPoP {
		// The session's own key, made now so the code exchange (and a
		// pushed request) is bound to it; dpop_jkt binds the code too
		// (RFC 9449 §10).
		key, err := GenerateDPoPKey(d.dpopAlg, h.rand)
		if err != nil {
			return fmt.Errorf("start login: %w", err)
		}
		ls.DpopKey = key.Marshal()
		dpopOpts = append(dpopOpts, oauth2.SetAuthURLParam("dpop_jkt", key.Thumbprint()))
	}
	// Stored under state and the cookie's secret together: the binding to
	// this browser is the store key itself (T25, T71).
	if err := h.store.PutLoginState(r.Context(), state, binding, ls); err != nil {
		return fmt.Errorf("store login state: %w", err)
	}
	// redirect_uri, scopes and client come from the config only (T23);
	// the browser chooses only among the allow-listed parameters (T77).
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}, params.authOptions()...)
	opts = append(opts, dpopOpts...)
	authURL := d.oauth2.AuthCodeURL(state, opts...)
	if d.usePAR {
		if authURL, err = h.pushAuthorization(r.Context(), d, authURL); err != nil {
			return err
		}
	}
	w.Header().Add("Set-Cookie", h.setLoginCookie(binding))
	redirect(w, authURL)
	return nil
}
