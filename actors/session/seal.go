package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
)

// During a grace window the successor of a rotated-away secret must be
// handed out again, byte for byte, to a client retrying that secret. The
// successor is kept sealed with AES-256-GCM under a key derived (HKDF-SHA256)
// from the rotated-away secret itself, which the state holds only as a hash:
// whoever reads the store or the log learns nothing usable, and only the
// holder of the old secret can unseal its successor. Each old secret is
// 256 random bits and seals exactly one value, so a random nonce from
// ctx.Entropy is far from any reuse bound. The additional data binds the
// ciphertext to its session and generation.

func graceKey(presented []byte, sessionID string) ([]byte, error) {
	return hkdf.Key(sha256.New, presented, nil, "ward session refresh grace\x00"+sessionID, 32)
}

func graceAD(sessionID string, generation uint64) []byte {
	return []byte(sessionID + "\x00" + strconv.FormatUint(generation, 10))
}

func graceAEAD(presented []byte, sessionID string) (cipher.AEAD, error) {
	key, err := graceKey(presented, sessionID)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealSuccessor returns nonce || ciphertext || tag.
func sealSuccessor(presented, successor []byte, entropy io.Reader, sessionID string, generation uint64) ([]byte, error) {
	g, err := graceAEAD(presented, sessionID)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(successor)+g.Overhead())
	if _, err := io.ReadFull(entropy, nonce); err != nil {
		return nil, fmt.Errorf("draw grace nonce: %w", err)
	}
	return g.Seal(nonce, nonce, successor, graceAD(sessionID, generation)), nil
}

func openSuccessor(presented, sealed []byte, sessionID string, generation uint64) ([]byte, error) {
	g, err := graceAEAD(presented, sessionID)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("sealed successor is too short")
	}
	n := g.NonceSize()
	pt, err := g.Open(nil, sealed[:n], sealed[n:], graceAD(sessionID, generation))
	if err != nil {
		return nil, fmt.Errorf("open sealed successor: %w", err)
	}
	return pt, nil
}
