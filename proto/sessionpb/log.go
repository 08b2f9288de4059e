package sessionpb

import "log/slog"

// LogValue redacts every secret so a record can be passed to slog safely.
func (x *Session) LogValue() slog.Value {
	if x == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.Uint64("generation", x.GetGeneration()),
		slog.String("issuer", x.GetIssuer()),
		slog.String("subject", x.GetSubject()),
		slog.Int64("access_token_expires_at_unix_ms", x.GetAccessTokenExpiresAtUnixMs()),
		slog.Bool("has_refresh_token", x.GetRefreshToken() != ""),
	)
}

// LogValue redacts the nonce and verifier.
func (x *LoginState) LogValue() slog.Value {
	if x == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.Int64("created_at_unix_ms", x.GetCreatedAtUnixMs()))
}

// LogValue keeps the access token out of logs.
func (x *ClientToken) LogValue() slog.Value {
	if x == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("scope", x.GetScope()),
		slog.Int64("expires_at_unix_ms", x.GetExpiresAtUnixMs()),
	)
}
