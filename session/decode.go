package session

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// errNotLean sends a record the lean decoder does not know field by field
// to proto.Unmarshal.
var errNotLean = errors.New("record needs the general decoder")

// unmarshalSession decodes an opened Session record into s, which must be
// empty. Every Check decodes one, so the common shape takes a lean path:
// the whole plaintext is copied into one string and every string field is
// a slice of it (one allocation, where proto.Unmarshal makes one per
// field), and strings are not checked for UTF-8 again: GCM has just
// authenticated the record as one envoy-bff sealed, and proto.Marshal
// refuses invalid UTF-8 when sealing. Bytes fields are copied, so the
// record holds on to nothing of b (the memory store keeps records it
// opened; they should not keep the plaintext buffer alive as well).
//
// A record with any field this code does not know (written by a newer
// replica during a rolling upgrade), or a known field in a wire type it
// does not expect, goes to proto.Unmarshal, which keeps unknown fields so
// an Update here does not drop them.
func unmarshalSession(s *sessionpb.Session, b []byte) error {
	if err := unmarshalSessionLean(s, b); err != nil {
		s.Reset()
		return proto.Unmarshal(b, s)
	}
	return nil
}

// unmarshalSessionLean is unmarshalSession's lean path; any error means
// "use proto.Unmarshal", and s is then partly filled.
func unmarshalSessionLean(s *sessionpb.Session, b []byte) error {
	var str string // string(b), made on the first string field
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return errNotLean
		}
		i += n
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b[i:])
			if n < 0 {
				return errNotLean
			}
			i += n
			if !setVarint(s, num, v) {
				return errNotLean
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b[i:])
			if n < 0 {
				return errNotLean
			}
			start := i + n - len(v)
			i += n
			switch num {
			case 14, 19: // claims_json, dpop_key
				var field []byte
				if len(v) > 0 { // as proto.Unmarshal: an empty bytes field is nil
					field = append([]byte(nil), v...)
				}
				if num == 14 {
					s.ClaimsJson = field
				} else {
					s.DpopKey = field
				}
				continue
			}
			if str == "" {
				str = string(b)
			}
			if !setString(s, num, str[start:i]) {
				return errNotLean
			}
		default:
			return errNotLean
		}
	}
	return nil
}

// setString sets s's string field num to v; false if num is not one.
func setString(s *sessionpb.Session, num protowire.Number, v string) bool {
	switch num {
	case 3:
		s.Issuer = v
	case 4:
		s.Subject = v
	case 5:
		s.Sid = v
	case 7:
		s.AccessToken = v
	case 8:
		s.RefreshToken = v
	case 9:
		s.IdToken = v
	case 10:
		s.TokenType = v
	case 15:
		s.Scope = v
	case 17:
		s.Acr = v
	default:
		return false
	}
	return true
}

// setVarint sets s's varint field num to v, converted as proto.Unmarshal
// does; false if num is not one.
func setVarint(s *sessionpb.Session, num protowire.Number, v uint64) bool {
	switch num {
	case 1:
		s.SchemaVersion = uint32(v)
	case 2:
		s.Generation = v
	case 6:
		s.SidFromProvider = protowire.DecodeBool(v)
	case 11:
		s.AccessTokenExpiresAtUnixMs = int64(v)
	case 12:
		s.CreatedAtUnixMs = int64(v)
	case 13:
		s.AbsoluteExpiresAtUnixMs = int64(v)
	case 16:
		s.AccessTokenIssuedAtUnixMs = int64(v)
	case 18:
		s.AuthTimeUnix = int64(v)
	default:
		return false
	}
	return true
}
