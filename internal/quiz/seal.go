package quiz

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Result is what a player's sealed answer says, revealed with the key (Q4).
type Result struct {
	N         int  `json:"n"`
	Correct   bool `json:"correct"`
	Revived   bool `json:"revived"`
	Alive     bool `json:"alive"`
	CardsLeft int  `json:"cards_left"`
}

// QuestionKey is question n's 32-byte AES-256 key, derived from the
// activity's secret so every node computes the same key without storing
// one per question: HMAC-SHA256(secret, "{activity}:{n}").
func QuestionKey(secret []byte, activity string, n int) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(additionalData(activity, n)))
	return m.Sum(nil)
}

// KeyHash is the hex SHA-256 of a key, published with the question so a
// player can check the key revealed later.
func KeyHash(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:])
}

func additionalData(activity string, n int) string { return activity + ":" + strconv.Itoa(n) }

// Seal encrypts r with AES-256-GCM under key: a random 12-byte nonce
// followed by the ciphertext (with its tag), additional data
// "{activity}:{n}".
func Seal(key []byte, activity string, r Result) ([]byte, error) {
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	return sealWith(aead, activity, r)
}

// sealWith is Seal with the question's cipher already made (the Service
// keeps one per open question: the key schedule is not redone per answer).
func sealWith(aead cipher.AEAD, activity string, r Result) ([]byte, error) {
	var pb [96]byte
	plain := appendResult(pb[:0], r)
	out := make([]byte, 12, 12+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("quiz: nonce: %w", err)
	}
	return aead.Seal(out, out, plain, []byte(additionalData(activity, r.N))), nil
}

// appendResult is json.Marshal(r), without reflection.
func appendResult(b []byte, r Result) []byte {
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(r.N), 10)
	b = append(b, `,"correct":`...)
	b = strconv.AppendBool(b, r.Correct)
	b = append(b, `,"revived":`...)
	b = strconv.AppendBool(b, r.Revived)
	b = append(b, `,"alive":`...)
	b = strconv.AppendBool(b, r.Alive)
	b = append(b, `,"cards_left":`...)
	b = strconv.AppendInt(b, int64(r.CardsLeft), 10)
	return append(b, '}')
}

// Open decrypts a sealed result with key; it fails for any other key, another
// activity or question, or altered bytes.
func Open(key []byte, activity string, n int, sealed []byte) (Result, error) {
	aead, err := gcm(key)
	if err != nil {
		return Result{}, err
	}
	if len(sealed) < 12+aead.Overhead() {
		return Result{}, errors.New("quiz: sealed result too short")
	}
	plain, err := aead.Open(nil, sealed[:12], sealed[12:], []byte(additionalData(activity, n)))
	if err != nil {
		return Result{}, fmt.Errorf("quiz: open sealed result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(plain, &r); err != nil {
		return Result{}, fmt.Errorf("quiz: sealed result: %w", err)
	}
	return r, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("quiz: key must be 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
