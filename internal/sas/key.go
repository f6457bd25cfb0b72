package sas

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey means a symmetric key is not usable (empty or not base64).
var ErrInvalidKey = errors.New("sas: invalid key")

// GeneratedKeyLen is the length in bytes of keys GenerateKey makes (Azure
// DPS generates 64-byte keys, 88 base64 characters).
const GeneratedKeyLen = 64

// DecodeKey decodes a base64 symmetric key (standard alphabet; padding may
// be omitted). Errors wrap ErrInvalidKey and say what is wrong.
func DecodeKey(b64 string) ([]byte, error) {
	if b64 == "" {
		return nil, fmt.Errorf("decode key: %w: key is empty", ErrInvalidKey)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil && !strings.Contains(b64, "=") {
		if r, rerr := base64.RawStdEncoding.DecodeString(b64); rerr == nil {
			raw, err = r, nil
		}
	}
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("decode key: %w: not standard base64 (bad character or padding at offset %d)", ErrInvalidKey, int64(ce))
		}
		return nil, fmt.Errorf("decode key: %w: %v", ErrInvalidKey, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("decode key: %w: key decodes to zero bytes", ErrInvalidKey)
	}
	return raw, nil
}

// Derive returns HMAC-SHA256(groupKey, UTF-8(registrationID)): the device
// key of a DPS symmetric-key enrollment group member, in raw bytes.
func Derive(groupKey []byte, registrationID string) []byte {
	mac := hmac.New(sha256.New, groupKey)
	mac.Write([]byte(registrationID))
	return mac.Sum(nil)
}

// DeriveKey returns the base64 device key derived from a base64 group key
// for registrationID: base64(HMAC-SHA256(base64-decode(groupKey), registrationID)).
// The registration ID is used exactly as given (the derivation is case-sensitive).
func DeriveKey(groupKeyB64, registrationID string) (string, error) {
	gk, err := DecodeKey(groupKeyB64)
	if err != nil {
		return "", fmt.Errorf("derive device key: group key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(Derive(gk, registrationID)), nil
}

// GenerateKey returns a new random symmetric key of GeneratedKeyLen bytes,
// base64-encoded (88 characters).
func GenerateKey() (string, error) {
	b := make([]byte, GeneratedKeyLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
