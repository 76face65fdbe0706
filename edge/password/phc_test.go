package password

import (
	"errors"
	"strings"
	"testing"
)

// Vectors computed with Debian's argon2 tool (the reference implementation,
// package argon2 20190702), e.g.
//
//	echo -n password | argon2 somesalt -id -t 1 -k 64 -p 1 -l 32
//
// RFC 9106's argon2id vector (§5.3) uses a secret key and associated data,
// which golang.org/x/crypto/argon2 does not expose, so it cannot be checked
// through IDKey.
var referenceVectors = []struct {
	password, phc string
	heavy         bool // the production parameters: 64 MiB, t=3
}{
	{"password", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$cpx6VEQbwTVZvcpxNIxOVUWZ5xnAipUmAe1cg2GMG70", false},
	{"correct horse battery staple", "$argon2id$v=19$m=256,t=2,p=2$c2FsdHNhbHRzYWx0c2FsdA$hxPLLiBpfa57qgxuWv9vyCQmEygKFVJ60hWMl7OF4Jo", false},
	{"password", "$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$noeJyLQoNCIK/AAIWsc6zDCGUSFplKu/3dabJZIDLv0", true},
}

func TestReferenceVectors(t *testing.T) {
	for _, v := range referenceVectors {
		if v.heavy && testing.Short() {
			continue
		}
		p, err := ParsePHC(v.phc)
		if err != nil {
			t.Fatalf("ParsePHC(%s): %v", v.phc, err)
		}
		if got := p.String(); got != v.phc {
			t.Errorf("re-encoded\n %s\nwant\n %s", got, v.phc)
		}
		key := idKey([]byte(v.password), p.Salt, p.Params)
		if got := (PHC{Params: p.Params, Salt: p.Salt, Key: key}).String(); got != v.phc {
			t.Errorf("IDKey(%q) gives\n %s\nreference tool gives\n %s", v.password, got, v.phc)
		}
	}
}

func TestParsePHCFields(t *testing.T) {
	p, err := ParsePHC("$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$noeJyLQoNCIK/AAIWsc6zDCGUSFplKu/3dabJZIDLv0")
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Memory: 65536, Time: 3, Threads: 1, SaltLen: 8, KeyLen: 32}
	if p.Params != want || string(p.Salt) != "somesalt" {
		t.Fatalf("got %+v salt %q, want %+v salt somesalt", p.Params, p.Salt, want)
	}
}

func TestParsePHCMalformed(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "cpx6VEQbwTVZvcpxNIxOVUWZ5xnAipUmAe1cg2GMG70"
	ok := "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key
	if _, err := ParsePHC(ok); err != nil {
		t.Fatalf("baseline refused: %v", err)
	}
	cases := []struct {
		name, in, reason string // reason: a fragment the message must hold
		outOfRange       bool
	}{
		{"empty", "", "does not start with '$'", false},
		{"no leading $", "argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key, "does not start", false},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key, `algorithm "argon2i" is not argon2id`, false},
		{"bcrypt", "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", "is not argon2id", false},
		{"missing version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key, "want 5", false},
		{"version 16", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key, "version \"16\" is not 19", false},
		{"version junk", "$argon2id$x=19$m=64,t=1,p=1$" + salt + "$" + key, "not v=<number>", false},
		{"too many fields", ok + "$extra", "has 6", false},
		{"too few fields", "$argon2id$v=19$m=64,t=1,p=1$" + salt, "has 4", false},
		{"params reordered", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key, "want m=<number>", false},
		{"params missing", "$argon2id$v=19$m=64,t=1$" + salt + "$" + key, "is not m=<KiB>,t=<passes>,p=<lanes>", false},
		{"keyid field", "$argon2id$v=19$m=64,t=1,p=1,keyid=abc$" + salt + "$" + key, "is not m=<KiB>", false},
		{"negative", "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key, "not a decimal number", false},
		{"plus sign", "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key, "not a decimal number", false},
		{"leading zero", "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + key, "leading zero", false},
		{"empty number", "$argon2id$v=19$m=,t=1,p=1$" + salt + "$" + key, "empty number", false},
		{"overflow", "$argon2id$v=19$m=4294967296,t=1,p=1$" + salt + "$" + key, "does not fit in 32 bits", false},
		{"padded salt", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ=$" + key, "salt: byte '='", false},
		{"newline in key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$cpx6VEQbwTVZvcpx\nNIxOVUWZ5xnAipUmAe1cg2GMG70", "key: byte '\\n'", false},
		{"url alphabet", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$cpx6VEQbwTVZvcpx_NIxOVUWZ5xnAipUmAe1cg2GMG7", "key: byte '_'", false},
		{"non-canonical tail bits", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHR$" + key, "salt: not canonical", false},
		{"bad base64 length", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$" + key + "AA", "key: not canonical", false},
		{"empty salt", "$argon2id$v=19$m=64,t=1,p=1$$" + key, "salt: empty", false},
		{"too long", ok + strings.Repeat("A", 600), "more than 512", false},
		// Well-formed but hostile or broken parameters.
		{"4 GiB", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key, "exceeds the limit", true},
		{"t=1e9", "$argon2id$v=19$m=64,t=1000000000,p=1$" + salt + "$" + key, "time cost t=1000000000 outside 1..16", true},
		{"t=0", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key, "time cost t=0", true},
		{"p=0", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key, "parallelism p=0", true},
		{"p=256", "$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key, "parallelism p=256", true},
		{"p=64", "$argon2id$v=19$m=1024,t=1,p=64$" + salt + "$" + key, "parallelism p=64", true},
		{"memory below 8p", "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key, "below 8 KiB per lane", true},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key, "salt length 4", true},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$cpx6VEQbwTVZvcpx", "key length 12", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePHC(c.in)
			if err == nil {
				t.Fatalf("ParsePHC(%q) accepted", c.in)
			}
			if !errors.Is(err, ErrMalformedHash) {
				t.Errorf("error %v does not match ErrMalformedHash", err)
			}
			if got := errors.Is(err, ErrParamsOutOfRange); got != c.outOfRange {
				t.Errorf("errors.Is(err, ErrParamsOutOfRange) = %v, want %v (%v)", got, c.outOfRange, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("error %q does not say %q", err, c.reason)
			}
		})
	}
}

func FuzzParsePHC(f *testing.F) {
	for _, v := range referenceVectors {
		f.Add(v.phc)
	}
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$c29tZXNhbHRzb21lc2FsdA")
	f.Add("$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$c29tZXNhbHRzb21lc2FsdA")
	f.Add("$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$c29tZXNhbHRzb21lc2FsdA")
	f.Add("$argon2id$v=19$m=064,t=1,p=1$c29tZXNhbHQ=$c29tZXNhbHRzb21lc2FsdA")
	f.Add("$")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v does not match ErrMalformedHash", err)
			}
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("accepted %q but re-encodes to %q", s, got)
		}
		if err := p.Params.Validate(); err != nil {
			t.Fatalf("accepted %q with invalid params: %v", s, err)
		}
	})
}
