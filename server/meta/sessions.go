package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CreateSession implements Sessions.
func (s *SQLite) CreateSession(ctx context.Context, sess Session) error {
	if err := checkSecretHash("session token hash", sess.TokenHash); err != nil {
		return err
	}
	if err := checkTime("session expiry", sess.ExpiresAt); err != nil {
		return err
	}
	return s.update(ctx, func(d dbtx) error {
		var state string
		err := d.queryRow(`SELECT state FROM accounts WHERE id = $1`, sess.AccountID).Scan(&state)
		if err != nil {
			return dbErr("create session", notFound(err, "account %d", sess.AccountID))
		}
		if AccountState(state) != StateActive {
			return fmt.Errorf("%w: account %d is %s", ErrNotPermitted, sess.AccountID, state)
		}
		n, err := d.execN(`INSERT INTO sessions (token_hash, account, created_at, expires_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO NOTHING`,
			sess.TokenHash, sess.AccountID, nanos(time.Now()), nanos(sess.ExpiresAt))
		if err != nil {
			return dbErr("create session", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: session", ErrExists)
		}
		return nil
	})
}

// GetSession implements Sessions.
func (s *SQLite) GetSession(ctx context.Context, tokenHash []byte) (Session, error) {
	d, err := s.read(ctx)
	if err != nil {
		return Session{}, err
	}
	sess := Session{TokenHash: tokenHash}
	var created, expires int64
	sess.Account, err = scanAccount(d.queryRow(`SELECT `+accountColsA+`, s.created_at, s.expires_at
		FROM sessions s JOIN accounts a ON a.id = s.account WHERE s.token_hash = $1`, tokenHash), &created, &expires)
	sess.AccountID = sess.Account.ID
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("%w: session", ErrNotFound)
	}
	if err != nil {
		return Session{}, dbErr("get session", err)
	}
	if now := time.Now(); expires <= nanos(now) {
		// Best effort: the session is refused either way, and
		// PurgeExpiredSessions collects it if this delete fails.
		s.update(ctx, func(d dbtx) error {
			_, err := d.exec(`DELETE FROM sessions WHERE token_hash = $1 AND expires_at <= $2`, tokenHash, nanos(now))
			return err
		})
		return Session{}, fmt.Errorf("%w: session expired", ErrNotFound)
	}
	sess.CreatedAt, sess.ExpiresAt = fromNanos(created), fromNanos(expires)
	return sess, nil
}

// DeleteSession implements Sessions.
func (s *SQLite) DeleteSession(ctx context.Context, tokenHash []byte) error {
	return s.update(ctx, func(d dbtx) error {
		_, err := d.exec(`DELETE FROM sessions WHERE token_hash = $1`, tokenHash)
		return dbErr("delete session", err)
	})
}

// DeleteSessions implements Sessions.
func (s *SQLite) DeleteSessions(ctx context.Context, account int64) (int64, error) {
	var n int64
	err := s.update(ctx, func(d dbtx) error {
		var err error
		n, err = d.execN(`DELETE FROM sessions WHERE account = $1`, account)
		return dbErr("delete sessions", err)
	})
	return n, err
}

// PurgeExpiredSessions implements Sessions.
func (s *SQLite) PurgeExpiredSessions(ctx context.Context) (int64, error) {
	var n int64
	err := s.update(ctx, func(d dbtx) error {
		var err error
		n, err = d.execN(`DELETE FROM sessions WHERE expires_at <= $1`, nanos(time.Now()))
		return dbErr("purge sessions", err)
	})
	return n, err
}
