package password

import "fmt"

// Params are the argon2id cost parameters and output sizes.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over memory
	Threads uint8  // lanes (parallelism)
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// Bounds every Params value must respect: for the configured parameters and
// for any stored hash presented for verification. The upper bounds are about
// 4× the defaults in memory and 5× in passes, far above any sane setting for
// interactive login but far below what would let one stored hash take the
// node down.
const (
	MaxMemoryKiB = 256 * 1024 // 256 MiB
	MaxTime      = 16
	MaxThreads   = 16
	MinSaltLen   = 8
	MaxSaltLen   = 64
	MinKeyLen    = 16
	MaxKeyLen    = 64
)

// DefaultParams returns argon2id with m=64 MiB, t=3, p=1, a 16-byte salt and
// a 32-byte key (DESIGN.md §1; the second recommendation of RFC 9106 §4 with
// one lane).
func DefaultParams() Params {
	return Params{Memory: 64 * 1024, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Validate reports whether p lies within the bounds above and satisfies
// argon2's own constraint of at least 8 KiB of memory per lane.
func (p Params) Validate() error {
	switch {
	case p.Threads < 1 || p.Threads > MaxThreads:
		return fmt.Errorf("parallelism p=%d outside 1..%d", p.Threads, MaxThreads)
	case p.Time < 1 || p.Time > MaxTime:
		return fmt.Errorf("time cost t=%d outside 1..%d", p.Time, MaxTime)
	case p.Memory > MaxMemoryKiB:
		return fmt.Errorf("memory m=%d KiB exceeds the limit of %d KiB", p.Memory, MaxMemoryKiB)
	case p.Memory < 8*uint32(p.Threads):
		return fmt.Errorf("memory m=%d KiB below 8 KiB per lane (p=%d)", p.Memory, p.Threads)
	case p.SaltLen < MinSaltLen || p.SaltLen > MaxSaltLen:
		return fmt.Errorf("salt length %d bytes outside %d..%d", p.SaltLen, MinSaltLen, MaxSaltLen)
	case p.KeyLen < MinKeyLen || p.KeyLen > MaxKeyLen:
		return fmt.Errorf("key length %d bytes outside %d..%d", p.KeyLen, MinKeyLen, MaxKeyLen)
	}
	return nil
}
