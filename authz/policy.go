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
	// PolicyClient forwards a client-credentials token; parsed, not supported yet.
	PolicyClient Policy = "client"
	// PolicyUserOrClient forwards the user's token, or a client-credentials token without a session; parsed, not supported yet.
	PolicyUserOrClient Policy = "user_or_client"
)

// parsePolicy returns errPolicyInvalid for a name it does not know and
// errPolicyUnsupported for a known policy this version cannot serve.
func parsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyNone, PolicyUser, PolicyUserOrNone:
		return p, nil
	case PolicyClient, PolicyUserOrClient:
		return p, errPolicyUnsupported
	default:
		return "", errPolicyInvalid
	}
}

// validatePolicy is parsePolicy phrased for config errors.
func validatePolicy(s string) error {
	switch _, err := parsePolicy(s); err {
	case nil:
		return nil
	case errPolicyUnsupported:
		return fmt.Errorf("policy %q is not supported yet (use none, user or user_or_none)", s)
	default:
		return fmt.Errorf("unknown policy %q (want none, user or user_or_none)", s)
	}
}
