package authz

import "fmt"

// Policy says what a route requires, as in Duende BFF's RequiredTokenType.
type Policy string

// The route policies. See DESIGN.md, "Route policies".
const (
	// PolicyNone passes every request without a token (static files, health).
	PolicyNone Policy = "none"
	// PolicyUser requires a session and forwards the user's access token.
	PolicyUser Policy = "user"
	// PolicyUserOrNone forwards the user's access token when there is a session and passes anonymously otherwise.
	PolicyUserOrNone Policy = "user_or_none"
	// PolicyClient forwards a client-credentials token, session or not.
	PolicyClient Policy = "client"
	// PolicyUserOrClient forwards the user's access token when there is a session, else a client-credentials token.
	PolicyUserOrClient Policy = "user_or_client"
)

// parsePolicy returns errPolicyInvalid for a name it does not know.
func parsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyNone, PolicyUser, PolicyUserOrNone, PolicyClient, PolicyUserOrClient:
		return p, nil
	default:
		return "", errPolicyInvalid
	}
}

// validatePolicy is parsePolicy phrased for config errors.
func validatePolicy(s string) error {
	if _, err := parsePolicy(s); err != nil {
		return fmt.Errorf("unknown policy %q (want none, user, user_or_none, client or user_or_client)", s)
	}
	return nil
}

// usesClientToken reports whether p may forward a client-credentials token.
func (p Policy) usesClientToken() bool { return p == PolicyClient || p == PolicyUserOrClient }

// allowsRealtime reports whether a route with policy p may take the origin
// rule for WebSocket and EventSource requests: those that use a session.
func (p Policy) allowsRealtime() bool { return p == PolicyUser || p == PolicyUserOrNone }
