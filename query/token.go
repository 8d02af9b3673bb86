package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/apierr"
)

// Page tokens and stream cursors are opaque to clients: base64url (no
// padding) of a fixed binary layout followed by a truncated HMAC-SHA256 of
// it, so an altered or truncated token is rejected instead of silently
// reading from somewhere else.
//
//	page token: 'P' | order (1 byte) | occurred_ns (8) | id (16) | filter hash (16) | mac (16)
//	cursor:     'C' | ingested_at unix seconds (4) | id (16) | mac (16)
//
// A page token carries a hash of the canonical filter SQL, which includes
// the caller's scopes, so it works only with the filters, order and token
// scopes it was issued for. A cursor is a position in ingestion order and
// not bound to filters: resuming a stream with other filters is allowed and
// meaningful.
const (
	macLen       = 16
	pageBodyLen  = 1 + 1 + 8 + 16 + 16
	cursorBodyLn = 1 + 4 + 16
)

type signer struct{ key []byte }

func (s signer) mac(body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(body)
	return m.Sum(nil)[:macLen]
}

func (s signer) seal(body []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(body, s.mac(body)...))
}

// open checks and strips the mac; param names the request field in errors.
func (s signer) open(param, token string, kind byte, bodyLen int) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, apierr.InvalidArgument(param, "malformed (not a token issued by this service)")
	}
	if len(raw) != bodyLen+macLen || raw[0] != kind {
		return nil, apierr.InvalidArgument(param, "malformed or truncated (%d bytes, want %d)", len(raw), bodyLen+macLen)
	}
	body := raw[:bodyLen]
	if !hmac.Equal(raw[bodyLen:], s.mac(body)) {
		return nil, apierr.InvalidArgument(param, "altered, or signed with another --page-token-key")
	}
	return body, nil
}

// pagePos is a position in (occurred_ns, id) order: the last row of a page.
type pagePos struct {
	ns int64
	id uuid.UUID
}

func (s signer) pageToken(desc bool, pos pagePos, filterHash [16]byte) string {
	body := make([]byte, 0, pageBodyLen)
	body = append(body, 'P', orderByte(desc))
	body = binary.BigEndian.AppendUint64(body, uint64(pos.ns))
	body = append(body, pos.id[:]...)
	body = append(body, filterHash[:]...)
	return s.seal(body)
}

func (s signer) parsePageToken(token string, desc bool, filterHash [16]byte) (pagePos, error) {
	body, err := s.open("page_token", token, 'P', pageBodyLen)
	if err != nil {
		return pagePos{}, err
	}
	if body[1] != orderByte(desc) {
		return pagePos{}, apierr.InvalidArgument("page_token", "issued for order=%s, not order=%s", orderName(body[1] == 'd'), orderName(desc))
	}
	var pos pagePos
	pos.ns = int64(binary.BigEndian.Uint64(body[2:10]))
	copy(pos.id[:], body[10:26])
	if !hmac.Equal(body[26:42], filterHash[:]) {
		return pagePos{}, apierr.InvalidArgument("page_token", "issued for other filters; repeat the filters of the first page or start again without page_token")
	}
	return pos, nil
}

func orderByte(desc bool) byte {
	if desc {
		return 'd'
	}
	return 'a'
}

func orderName(desc bool) string {
	if desc {
		return "desc"
	}
	return "asc"
}

// streamPos is a position in (ingested_at, id) order.
type streamPos struct {
	at uint32 // unix seconds
	id uuid.UUID
}

func (s signer) cursor(pos streamPos) string {
	body := make([]byte, 0, cursorBodyLn)
	body = append(body, 'C')
	body = binary.BigEndian.AppendUint32(body, pos.at)
	body = append(body, pos.id[:]...)
	return s.seal(body)
}

func (s signer) parseCursor(token string) (streamPos, error) {
	body, err := s.open("cursor", token, 'C', cursorBodyLn)
	if err != nil {
		return streamPos{}, err
	}
	var pos streamPos
	pos.at = binary.BigEndian.Uint32(body[1:5])
	copy(pos.id[:], body[5:21])
	return pos, nil
}

// filterHash identifies a filter by its SQL and arguments, which include the
// caller's scopes: equal hashes mean the same rows.
func filterHash(where string, args []any) [16]byte {
	h := sha256.New()
	h.Write([]byte(where))
	for _, a := range args {
		v := fmt.Sprint(a) // length-prefixed, so no two lists of values hash alike
		fmt.Fprintf(h, "\x00%T:%d:%s", a, len(v), v)
	}
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}
