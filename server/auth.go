package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/meta"
)

// The server never stores a client's auth key, only a salted slow hash of it.
// The auth key is already the output of a slow KDF, so this hash does not
// need the client's cost; it exists so that a stolen database cannot be
// replayed as credentials, and it is slow enough to make a dump useless for
// cheap checking. Layout: version (1) || salt (16) || Argon2id output (32).
const (
	authHashVersion = 1
	authSaltSize    = 16
	authHashSize    = 32
	authHashTime    = 1
	authHashMemKiB  = 16 * 1024
)

func hashAuthKey(authKey []byte) []byte {
	salt := make([]byte, authSaltSize)
	rand.Read(salt)
	return append(append([]byte{authHashVersion}, salt...), argon2.IDKey(authKey, salt, authHashTime, authHashMemKiB, 1, authHashSize)...)
}

// checkAuthKey compares in constant time. A malformed stored hash compares
// unequal after doing the same work, so timing does not tell it apart.
func checkAuthKey(stored, authKey []byte) bool {
	salt := make([]byte, authSaltSize)
	want := make([]byte, authHashSize)
	ok := len(stored) == 1+authSaltSize+authHashSize && stored[0] == authHashVersion
	if ok {
		copy(salt, stored[1:])
		copy(want, stored[1+authSaltSize:])
	}
	got := argon2.IDKey(authKey, salt, authHashTime, authHashMemKiB, 1, authHashSize)
	return subtle.ConstantTimeCompare(got, want) == 1 && ok
}

// Session tokens: 32 random bytes, base64url. Only their SHA-256 is stored.
func newToken() (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, tokenHash(token)
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Invite codes: 20 random bytes, base64url. Only their SHA-256 is stored.
func newInviteCode() (code string, hash []byte) {
	b := make([]byte, 20)
	rand.Read(b)
	code = "sfi_" + base64.RawURLEncoding.EncodeToString(b)
	return code, inviteHash(code)
}

func inviteHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

// NewInvite creates an invite for user in st and returns the code to hand
// out. The code itself is never stored.
func NewInvite(ctx context.Context, st meta.Store, user string, expires time.Duration, quota int64) (string, error) {
	if err := checkUserName(user); err != nil {
		return "", err
	}
	code, h := newInviteCode()
	now := time.Now()
	err := st.CreateInvite(ctx, meta.Invite{CodeHash: h, UserName: user, QuotaBytes: quota, CreatedAt: now, ExpiresAt: now.Add(expires)})
	return code, err
}

// checkUserName allows names that are safe in logs, URLs and messages.
func checkUserName(u string) error {
	if len(u) == 0 || len(u) > wire.MaxUserName {
		return badRequest("user name must be 1 to %d characters", wire.MaxUserName)
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return badRequest("user name may contain only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// principal is the authenticated account of a request.
type principal struct {
	account meta.Account
	token   []byte // hash of the presented token
}

type principalKey struct{}

func principalOf(r *http.Request) *principal {
	p, _ := r.Context().Value(principalKey{}).(*principal)
	return p
}

var errUnauthorized = errf(wire.CodeUnauthorized, "a valid session is required: log in again")

// authenticated wraps a handler with bearer-token authentication. A
// disabled account's sessions are deleted when it is disabled, so a valid
// session implies an active account; the state is checked anyway, because
// a request may race with the disabling.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" || len(tok) > 128 {
			return errUnauthorized
		}
		th := tokenHash(tok)
		now := time.Now()
		sess, ok, t := s.sessions.lookup(th, now)
		if !ok {
			var err error
			sess, err = s.meta.GetSession(r.Context(), th)
			if errors.Is(err, meta.ErrNotFound) {
				return errUnauthorized
			}
			if err != nil {
				return err
			}
			if sess.Account.State == meta.StateActive {
				s.sessions.store(th, sess, t, now)
			}
		}
		acct := sess.Account
		if acct.State != meta.StateActive {
			return errf(wire.CodeAccountDisabled, "the account is disabled; ask the server's operator")
		}
		ctx := context.WithValue(r.Context(), principalKey{}, &principal{account: acct, token: sess.TokenHash})
		r = withOrigin(r.WithContext(ctx))
		if k := r.Header.Get(wire.HeaderIdempotencyKey); k != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			key, err := crypto.ParseID(k)
			if err != nil {
				return badRequest("the Idempotency-Key must be 32 hex digits")
			}
			s.idem.serve(w, r, acct.ID, key, s.handle(h))
			return nil
		}
		return h(w, r)
	})
}

// fakeSalt is the stable salt pre-login returns for an unknown user: an HMAC
// of the name under a server secret, so it looks like a real random salt and
// repeats like one.
func (s *Server) fakeSalt(user string) []byte {
	h := sha256.New()
	h.Write(s.secret)
	h.Write([]byte{0})
	h.Write([]byte(user))
	return h.Sum(nil)[:16]
}

func fmtDuration(d time.Duration) string { return fmt.Sprintf("%.0fs", d.Seconds()) }
