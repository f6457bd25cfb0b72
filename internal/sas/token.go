// Package sas owns Azure-compatible shared access signatures: parsing and
// verifying SAS tokens as every Azure IoT SDK writes them, minting tokens,
// decoding, generating and deriving symmetric keys (the DPS group-enrollment
// device key), and IoT connection strings.
//
// It is pure computation: it must not import net/http, an MQTT library, a
// SQL driver or any other Muster package.
package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxTokenLen is the longest SAS token Parse accepts, in bytes.
const MaxTokenLen = 4096

// Prefix starts every SAS token an SDK sends.
const Prefix = "SharedAccessSignature "

// Sentinel errors callers branch on.
var (
	// ErrMalformed means a SAS token could not be parsed (see MalformedError).
	ErrMalformed = errors.New("sas: malformed token")
	// ErrExpired means a SAS token's expiry has passed (see ExpiredError).
	ErrExpired = errors.New("sas: token expired")
)

// MalformedError says which field of a SAS token is malformed and why.
// It matches ErrMalformed with errors.Is.
type MalformedError struct {
	// Field is the token field at fault (sr, sig, se, skn) or "token" for
	// the token as a whole.
	Field string
	// Msg describes the problem.
	Msg string
}

func (e *MalformedError) Error() string {
	if e.Field == "token" {
		return "malformed SAS token: " + e.Msg
	}
	return "malformed SAS token: field " + e.Field + ": " + e.Msg
}

// Is reports whether target is ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// ExpiredError says when an expired SAS token expired. It matches
// ErrExpired with errors.Is.
type ExpiredError struct {
	// At is the token's expiry (its se field).
	At time.Time
	// Now is the server time the expiry was checked against.
	Now time.Time
}

func (e *ExpiredError) Error() string {
	s := "SAS token expired at " + e.At.UTC().Format(time.RFC3339)
	if !e.Now.IsZero() {
		s += " (server time " + e.Now.UTC().Format(time.RFC3339) + ")"
	}
	return s
}

// Is reports whether target is ErrExpired.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// Token is a parsed SAS token.
type Token struct {
	// Resource is the sr field exactly as it appears in the token (still
	// URL-encoded if the client encoded it).
	Resource string
	// Signature is the sig field, URL-decoded (still base64).
	Signature string
	// Expiry is the se field as a time.
	Expiry time.Time
	// ExpiryRaw is the se field as sent.
	ExpiryRaw string
	// KeyName is the skn field, URL-decoded; "" when absent.
	KeyName string

	// sig is the decoded signature.
	sig []byte
	// literal is the string-to-sign over the literal sr, the one nearly
	// every client signs.
	literal []byte
	// alt holds the other candidate strings-to-sign, computed on the first
	// miss and shared by later calls (and by copies of the Token).
	alt *altMessages
}

// altMessages are the candidate strings-to-sign besides the literal one.
type altMessages struct {
	once sync.Once
	msgs [][]byte
}

// Parse parses a SAS token, with or without the "SharedAccessSignature "
// prefix (matched case-insensitively). Fields are &-separated in any order
// and split on their first '='; field names are case-insensitive, unknown
// fields are ignored and skn is optional. Every problem is reported as a
// *MalformedError naming the field.
func Parse(s string) (*Token, error) {
	if len(s) > MaxTokenLen {
		return nil, &MalformedError{Field: "token", Msg: fmt.Sprintf("token is %d bytes, longer than the %d-byte limit", len(s), MaxTokenLen)}
	}
	s = strings.TrimSpace(s)
	if word := Prefix[:len(Prefix)-1]; len(s) >= len(word) && strings.EqualFold(s[:len(word)], word) &&
		(len(s) == len(word) || s[len(word)] == ' ') {
		s = strings.TrimLeft(s[len(word):], " ")
	}
	if s == "" {
		return nil, &MalformedError{Field: "token", Msg: "token is empty"}
	}
	var (
		sr, sig, se, skn string
		seen             [4]bool
	)
	for part := range strings.SplitSeq(s, "&") {
		if part == "" {
			continue
		}
		name, value, hasValue := strings.Cut(part, "=")
		var idx int
		var dst *string
		switch {
		case strings.EqualFold(name, "sr"):
			idx, dst, name = 0, &sr, "sr"
		case strings.EqualFold(name, "sig"):
			idx, dst, name = 1, &sig, "sig"
		case strings.EqualFold(name, "se"):
			idx, dst, name = 2, &se, "se"
		case strings.EqualFold(name, "skn"):
			idx, dst, name = 3, &skn, "skn"
		default:
			continue
		}
		if seen[idx] {
			return nil, &MalformedError{Field: name, Msg: "field appears more than once"}
		}
		if !hasValue {
			return nil, &MalformedError{Field: name, Msg: "field has no '=' and no value"}
		}
		seen[idx] = true
		*dst = value
	}
	for i, name := range [...]string{"sr", "sig", "se"} {
		if !seen[i] {
			return nil, &MalformedError{Field: name, Msg: "field is missing"}
		}
	}
	t := &Token{Resource: sr, ExpiryRaw: se}
	if sr == "" {
		return nil, &MalformedError{Field: "sr", Msg: "resource is empty"}
	}
	if _, err := url.PathUnescape(sr); err != nil {
		return nil, &MalformedError{Field: "sr", Msg: "resource is not valid URL encoding: " + err.Error()}
	}
	exp, err := parseExpiry(se)
	if err != nil {
		return nil, err
	}
	t.Expiry = exp
	if t.Signature, t.sig, err = parseSignature(sig); err != nil {
		return nil, err
	}
	if seen[3] {
		if t.KeyName, err = url.PathUnescape(skn); err != nil {
			return nil, &MalformedError{Field: "skn", Msg: "key name is not valid URL encoding: " + err.Error()}
		}
	}
	t.literal = []byte(sr + "\n" + se)
	t.alt = new(altMessages)
	return t, nil
}

// parseExpiry parses se: decimal seconds since the Unix epoch.
func parseExpiry(se string) (time.Time, error) {
	if se == "" {
		return time.Time{}, &MalformedError{Field: "se", Msg: "expiry is empty"}
	}
	for i := 0; i < len(se); i++ {
		if se[i] < '0' || se[i] > '9' {
			return time.Time{}, &MalformedError{Field: "se", Msg: fmt.Sprintf("expiry %q is not a decimal number of seconds since 1970", se)}
		}
	}
	n, err := strconv.ParseInt(se, 10, 64)
	if err != nil {
		return time.Time{}, &MalformedError{Field: "se", Msg: fmt.Sprintf("expiry %q is out of range", se)}
	}
	return time.Unix(n, 0).UTC(), nil
}

// parseSignature URL-decodes and base64-decodes sig. '+' is kept as is, so
// a client that did not URL-encode its base64 signature still parses.
func parseSignature(sig string) (string, []byte, error) {
	if sig == "" {
		return "", nil, &MalformedError{Field: "sig", Msg: "signature is empty"}
	}
	dec, err := url.PathUnescape(sig)
	if err != nil {
		return "", nil, &MalformedError{Field: "sig", Msg: "signature is not valid URL encoding: " + err.Error()}
	}
	raw, err := base64.StdEncoding.DecodeString(dec)
	if err != nil && !strings.Contains(dec, "=") {
		raw, err = base64.RawStdEncoding.DecodeString(dec)
	}
	if err != nil {
		return "", nil, &MalformedError{Field: "sig", Msg: "signature is not valid base64: " + err.Error()}
	}
	if len(raw) != sha256.Size {
		return "", nil, &MalformedError{Field: "sig", Msg: fmt.Sprintf("signature is %d bytes, an HMAC-SHA256 is %d", len(raw), sha256.Size)}
	}
	return dec, raw, nil
}

// DecodedResource returns the URL-decoded sr field.
func (t *Token) DecodedResource() (string, error) {
	r, err := url.PathUnescape(t.Resource)
	if err != nil {
		return "", &MalformedError{Field: "sr", Msg: "resource is not valid URL encoding: " + err.Error()}
	}
	return r, nil
}

// CheckExpiry returns an *ExpiredError when the token's expiry plus skew
// is before now.
func (t *Token) CheckExpiry(now time.Time, skew time.Duration) error {
	if t.Expiry.Add(skew).Before(now) {
		return &ExpiredError{At: t.Expiry, Now: now}
	}
	return nil
}

// VerifyKey reports whether the token was signed with key. SDKs disagree
// on the exact text they sign, so it accepts an HMAC-SHA256 over any of the
// candidate resource strings (the literal sr, lower-cased, URL-decoded,
// re-encoded in the common styles) followed by "\n" and se, and compares
// each in constant time. An empty key never verifies.
func (t *Token) VerifyKey(key []byte) bool {
	return t.VerifyKeys([][]byte{key}) == 0
}

// VerifyKeys returns the index of the first of keys that signed the token,
// or -1 if none did (empty keys never verify). It accepts the same
// candidate strings-to-sign as VerifyKey, but tries the literal one, which
// nearly every client signs, with every key before trying the others, so
// matching a token against many keys costs about one HMAC per key.
func (t *Token) VerifyKeys(keys [][]byte) int {
	if len(t.sig) != sha256.Size {
		return -1
	}
	literal := t.literal
	if literal == nil {
		literal = []byte(t.Resource + "\n" + t.ExpiryRaw)
	}
	var sum [sha256.Size]byte
	macs := make([]hash.Hash, len(keys))
	for i, key := range keys {
		if len(key) == 0 {
			continue
		}
		macs[i] = hmac.New(sha256.New, key)
		macs[i].Write(literal)
		if hmac.Equal(macs[i].Sum(sum[:0]), t.sig) {
			return i
		}
	}
	alts := t.alternatives()
	for i, mac := range macs {
		if mac == nil {
			continue
		}
		for _, m := range alts {
			mac.Reset()
			mac.Write(m)
			if hmac.Equal(mac.Sum(sum[:0]), t.sig) {
				return i
			}
		}
	}
	return -1
}

// alternatives returns the candidate strings-to-sign other than the
// literal one, computing them once per parsed token.
func (t *Token) alternatives() [][]byte {
	if t.alt == nil {
		return candidateMessages(t.Resource, t.ExpiryRaw)
	}
	t.alt.once.Do(func() { t.alt.msgs = candidateMessages(t.Resource, t.ExpiryRaw) })
	return t.alt.msgs
}

// candidateMessages returns the distinct strings-to-sign other than the
// literal one that a client may have used for resource sr and expiry se.
func candidateMessages(sr, se string) [][]byte {
	cands := make([]string, 0, 12)
	add := func(c string) {
		if c == sr {
			return
		}
		for _, have := range cands {
			if have == c {
				return
			}
		}
		cands = append(cands, c)
	}
	add(strings.ToLower(sr))
	if dec, err := url.PathUnescape(sr); err == nil {
		for _, d := range []string{dec, strings.ToLower(dec)} {
			add(d)
			add(escape(d, jsUnreserved, upperHex))
			add(escape(d, jsUnreserved, lowerHex))
			add(escape(d, rfc3986Unreserved, upperHex))
			add(escape(d, rfc3986Unreserved, lowerHex))
			add(url.QueryEscape(d))
		}
	}
	msgs := make([][]byte, len(cands))
	for i, c := range cands {
		msgs[i] = []byte(c + "\n" + se)
	}
	return msgs
}

const (
	upperHex = "0123456789ABCDEF"
	lowerHex = "0123456789abcdef"
)

// jsUnreserved is the set JavaScript's encodeURIComponent leaves alone.
func jsUnreserved(c byte) bool {
	return rfc3986Unreserved(c) || strings.IndexByte("!'()*", c) >= 0
}

// rfc3986Unreserved is RFC 3986's unreserved set, which strict encoders
// (the Node SDK's encodeUriComponentStrict, Python's quote(safe="")) keep.
func rfc3986Unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// escape percent-encodes every byte of s outside keep with the given hex digits.
func escape(s string, keep func(byte) bool, hex string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Encode URL-encodes s as the Node SDK's strict encoder does: everything
// but RFC 3986 unreserved characters, with upper-case hex.
func Encode(s string) string { return escape(s, rfc3986Unreserved, upperHex) }

// Sign returns a SAS token for resource signed with key, valid until expiry:
// "SharedAccessSignature sr=<encoded resource>&sig=<encoded base64>&se=<unix>&skn=<keyName>"
// (skn omitted when keyName is empty). The signed text is the sr value
// exactly as placed in the token, as C, C# and Python clients do.
func Sign(resource string, key []byte, keyName string, expiry time.Time) string {
	sr := Encode(resource)
	se := strconv.FormatInt(expiry.Unix(), 10)
	s := Prefix + "sr=" + sr + "&sig=" + Encode(signature(sr, se, key)) + "&se=" + se
	if keyName != "" {
		s += "&skn=" + Encode(keyName)
	}
	return s
}

// SignRaw returns a SAS token as the Node DPS client writes it: sr raw
// (not URL-encoded, and signed raw), fields in the order sr, sig, skn, se.
func SignRaw(resource string, key []byte, keyName string, expiry time.Time) string {
	se := strconv.FormatInt(expiry.Unix(), 10)
	s := Prefix + "sr=" + resource + "&sig=" + Encode(signature(resource, se, key))
	if keyName != "" {
		s += "&skn=" + Encode(keyName)
	}
	return s + "&se=" + se
}

// signature is base64(HMAC-SHA256(key, sr + "\n" + se)).
func signature(sr, se string, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(sr + "\n" + se))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
