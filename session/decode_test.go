package session

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// fullSession has every field of Session set, so a field the lean decoder
// does not know shows.
func fullSession(t testing.TB) *sessionpb.Session {
	t.Helper()
	s := &sessionpb.Session{}
	m := s.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString("s-" + string(fd.Name()) + "-é✓")
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes([]byte("b-" + string(fd.Name()) + "\x00\xff"))
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.Uint32Kind:
			v = protoreflect.ValueOfUint32(uint32(1000 + fd.Number()))
		case protoreflect.Uint64Kind:
			v = protoreflect.ValueOfUint64(1<<40 + uint64(fd.Number()))
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64(-1<<40 - int64(fd.Number()))
		default:
			t.Fatalf("Session field %s is a %s: teach unmarshalSessionLean and this test about it", fd.Name(), fd.Kind())
		}
		m.Set(fd, v)
	}
	return s
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnmarshalSessionKnowsEveryField: every field of Session takes the
// lean path, so a field added to session.proto without the decoder fails
// here rather than quietly slowing every Check down.
func TestUnmarshalSessionKnowsEveryField(t *testing.T) {
	want := fullSession(t)
	b := marshal(t, want)
	got := &sessionpb.Session{}
	if err := unmarshalSessionLean(got, b); err != nil {
		t.Fatalf("lean path refused a record with every field set: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("lean decode\n got %v\nwant %v", got, want)
	}
}

// TestUnmarshalSessionMatchesProto: whatever path a record takes, the result
// is proto.Unmarshal's.
func TestUnmarshalSessionMatchesProto(t *testing.T) {
	full := marshal(t, fullSession(t))
	// A field number no Session has (a newer replica's field), as varint and
	// as bytes.
	unknownVarint := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
	unknownBytes := protowire.AppendString(protowire.AppendTag(nil, 98, protowire.BytesType), "newer")
	fixed := protowire.AppendFixed64(protowire.AppendTag(nil, 97, protowire.Fixed64Type), 1)
	// access_token twice: the last one wins.
	twice := append(marshal(t, &sessionpb.Session{AccessToken: "first"}), marshal(t, &sessionpb.Session{AccessToken: "second"})...)
	// claims_json present but empty: proto.Unmarshal gives nil.
	emptyClaims := protowire.AppendBytes(protowire.AppendTag(nil, 14, protowire.BytesType), nil)
	// subject sent as a varint: proto.Unmarshal keeps it as an unknown field.
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1)
	for name, b := range map[string][]byte{
		"empty":                   nil,
		"every field":             full,
		"typical":                 marshal(t, validRecordForDecode()),
		"unknown varint field":    append(bytes.Clone(full), unknownVarint...),
		"unknown bytes field":     append(unknownBytes, full...),
		"fixed64 field":           append(bytes.Clone(full), fixed...),
		"a field twice":           twice,
		"empty bytes field":       emptyClaims,
		"string field as varint":  wrongType,
		"schema version too wide": protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1<<33+1),
	} {
		t.Run(name, func(t *testing.T) {
			want := &sessionpb.Session{}
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatal(err)
			}
			got := &sessionpb.Session{}
			if err := unmarshalSession(got, bytes.Clone(b)); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("\n got %v\nwant %v", got, want)
			}
			if !bytes.Equal(got.ProtoReflect().GetUnknown(), want.ProtoReflect().GetUnknown()) {
				t.Fatalf("unknown fields %x, want %x", got.ProtoReflect().GetUnknown(), want.ProtoReflect().GetUnknown())
			}
		})
	}
}

// TestUnmarshalSessionKeepsNewerFields: a record a newer replica wrote keeps
// its fields through a read and a write here (a rolling upgrade).
func TestUnmarshalSessionKeepsNewerFields(t *testing.T) {
	newer := protowire.AppendString(protowire.AppendTag(nil, 40, protowire.BytesType), "from a newer replica")
	b := append(marshal(t, validRecordForDecode()), newer...)
	s := &sessionpb.Session{}
	if err := unmarshalSession(s, b); err != nil {
		t.Fatal(err)
	}
	s.AccessToken = "refreshed"
	if out := marshal(t, s); !bytes.Contains(out, newer) {
		t.Fatalf("re-encoded record lost the newer replica's field: %x", out)
	}
}

// TestUnmarshalSessionHoldsNothingOfTheBuffer: a decoded record shares no
// memory with the plaintext it came from, so a record the memory store
// keeps does not keep that buffer alive, and a buffer reused later cannot
// change a record.
func TestUnmarshalSessionHoldsNothingOfTheBuffer(t *testing.T) {
	want := fullSession(t)
	b := marshal(t, want)
	s := &sessionpb.Session{}
	if err := unmarshalSession(s, b); err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !proto.Equal(s, want) {
		t.Fatalf("record changed with the buffer it was decoded from:\n got %v\nwant %v", s, want)
	}
}

// TestUnmarshalSessionRefusesBroken: a record cut inside a field is an
// error, never a half-filled session.
func TestUnmarshalSessionRefusesBroken(t *testing.T) {
	b := marshal(t, fullSession(t))
	refused := 0
	for cut := 1; cut < len(b); cut++ {
		if proto.Unmarshal(b[:cut], &sessionpb.Session{}) == nil {
			continue // the cut fell between two fields
		}
		refused++
		if err := unmarshalSession(&sessionpb.Session{}, bytes.Clone(b[:cut])); err == nil {
			t.Errorf("record cut to %d of %d bytes decoded", cut, len(b))
		}
	}
	if refused < len(b)/2 {
		t.Fatalf("only %d of %d cuts broke the record: the test is not testing", refused, len(b))
	}
}

func validRecordForDecode() *sessionpb.Session {
	return &sessionpb.Session{
		SchemaVersion: schemaVersion, Issuer: "https://idp.example", Subject: "alice", Sid: "sid-1",
		AccessToken: "eyJ.access.sig", RefreshToken: "eyJ.refresh.sig", IdToken: "eyJ.id.sig", TokenType: "Bearer",
		AccessTokenExpiresAtUnixMs: 1_800_000_000_000, CreatedAtUnixMs: 1_700_000_000_000, AbsoluteExpiresAtUnixMs: 1_900_000_000_000,
		ClaimsJson: []byte(`{"sub":"alice"}`), Scope: "openid profile",
	}
}

// FuzzUnmarshalSession: on any input the lean decoder agrees with
// proto.Unmarshal, except that it does not check strings for UTF-8 again
// (sealed records were checked by proto.Marshal).
func FuzzUnmarshalSession(f *testing.F) {
	f.Add(marshal(f, validRecordForDecode()))
	f.Add(marshal(f, fullSession(f)))
	f.Add([]byte{0x0a, 0x00})
	f.Add(protowire.AppendString(protowire.AppendTag(nil, 40, protowire.BytesType), "x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &sessionpb.Session{}
		wantErr := proto.Unmarshal(b, want)
		got := &sessionpb.Session{}
		err := unmarshalSession(got, bytes.Clone(b))
		switch {
		case wantErr == nil && err != nil:
			t.Fatalf("proto.Unmarshal reads %x, unmarshalSession refuses it: %v", b, err)
		case wantErr == nil && !proto.Equal(got, want):
			t.Fatalf("%x:\n got %v\nwant %v", b, got, want)
		case wantErr != nil && err == nil && !strings.Contains(wantErr.Error(), "invalid UTF-8"):
			// Invalid UTF-8 in a string is the one thing only proto.Unmarshal
			// refuses: sealed records were checked by proto.Marshal.
			t.Fatalf("proto.Unmarshal refuses %x (%v), unmarshalSession reads it as %v", b, wantErr, got)
		}
	})
}
