// Package password hashes and verifies passwords with argon2id and judges
// whether a new password is strong enough.
//
// It lives at the edge, not in the user actor, because a password hash is
// deliberately expensive: 64 MiB of memory and tens to hundreds of
// milliseconds of CPU per call with the default parameters. Actors are
// deterministic state machines that must never block or draw randomness
// (DESIGN.md §3), so the edge computes the hash (drawing the salt) and hands
// the user actor only the resulting PHC string to store; the actor decides
// lockout from the verification outcome the edge reports.
//
// Because every hash holds its memory for its whole duration, a burst of
// logins could exhaust the node. A [Hasher] therefore admits at most
// MaxConcurrent hashes at once (peak memory = MaxConcurrent × m), lets up to
// MaxQueue callers wait, and refuses the rest with a [BusyError] carrying a
// Retry-After estimate, which the HTTP edge turns into 503 + Retry-After.
//
// Stored hashes use the PHC string format of the reference argon2
// implementation (and of Debian's argon2 tool):
//
//	$argon2id$v=19$m=65536,t=3,p=1$<salt, base64 unpadded>$<key, base64 unpadded>
//
// [ParsePHC] reads it strictly and bounds its parameters, so a corrupted or
// hostile stored hash cannot make a verification demand gigabytes of memory
// or billions of passes.
//
// [Check] is the strength policy applied when a password is set or changed:
// length, no personal data, and not guessable (zxcvbn score of at least 3,
// whose dictionaries include the commonest leaked passwords).
package password
