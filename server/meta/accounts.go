package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

const accountCols = `id, name, auth_hash, kdf, wrapped_master, account_pub, account_priv_sealed,
	transfer_data, transfer_kek, transfer_wrapped, layout, quota_bytes, used_bytes, state, created_at`

// accountColsA is accountCols qualified by the alias a, for joins.
var accountColsA = "a." + strings.ReplaceAll(strings.Join(strings.Fields(accountCols), " "), ", ", ", a.")

// scanAccount scans the columns of accountCols, then into extra any columns
// the query selected after them.
func scanAccount(row interface{ Scan(...any) error }, extra ...any) (Account, error) {
	var a Account
	var state string
	var created int64
	err := row.Scan(append([]any{&a.ID, &a.Name, &a.AuthHash, &a.KDF, &a.WrappedMaster, &a.AccountPub, &a.AccountPrivSealed,
		&a.TransferKey.Data, &a.TransferKey.KEKID, &a.TransferKey.WrappedKey, &a.Layout,
		&a.QuotaBytes, &a.UsedBytes, &state, &created}, extra...)...)
	if err != nil {
		return Account{}, err
	}
	a.State = AccountState(state)
	a.CreatedAt = fromNanos(created)
	return a, nil
}

// CreateAccount implements Accounts.
func (s *SQLite) CreateAccount(ctx context.Context, a NewAccount) (Account, error) {
	if err := checkNewAccount(a); err != nil {
		return Account{}, err
	}
	var acct Account
	err := s.update(ctx, func(d dbtx) error {
		var err error
		acct, err = createAccount(d, a, time.Now())
		return err
	})
	return acct, err
}

// createAccount inserts an account and its root directory.
func createAccount(d dbtx, a NewAccount, now time.Time) (Account, error) {
	acct := Account{
		Name: a.Name, AuthHash: a.AuthHash, KDF: a.KDF, WrappedMaster: a.WrappedMaster,
		AccountPub: a.AccountPub, AccountPrivSealed: a.AccountPrivSealed, TransferKey: a.TransferKey,
		Layout: a.Layout, QuotaBytes: a.QuotaBytes, State: StateActive, CreatedAt: fromNanos(nanos(now)),
	}
	err := d.queryRow(`INSERT INTO accounts (name, auth_hash, kdf, wrapped_master, account_pub,
			account_priv_sealed, transfer_data, transfer_kek, transfer_wrapped, layout, quota_bytes, state, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (name) DO NOTHING RETURNING id`,
		a.Name, a.AuthHash, a.KDF, a.WrappedMaster, a.AccountPub, a.AccountPrivSealed,
		a.TransferKey.Data, a.TransferKey.KEKID, a.TransferKey.WrappedKey, a.Layout, a.QuotaBytes,
		string(StateActive), nanos(now)).Scan(&acct.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: account %q", ErrExists, a.Name)
	}
	if err != nil {
		return Account{}, dbErr("create account", err)
	}
	var root ID
	if _, err := d.exec(`INSERT INTO inodes (account, id, type, version, nlink, attr, changed_at)
		VALUES ($1, $2, $3, 1, 1, $4, $5)`, acct.ID, root[:], int64(TypeDir), blob(a.RootAttr), nanos(now)); err != nil {
		return Account{}, dbErr("create root", err)
	}
	return acct, nil
}

// CreateInvite implements Accounts.
func (s *SQLite) CreateInvite(ctx context.Context, inv Invite) error {
	if err := checkSecretHash("invite code hash", inv.CodeHash); err != nil {
		return err
	}
	if err := checkTime("invite expiry", inv.ExpiresAt); err != nil {
		return err
	}
	if inv.UserName != "" {
		if err := checkAccountName(inv.UserName); err != nil {
			return err
		}
	}
	if inv.QuotaBytes < 0 {
		return fmt.Errorf("%w: negative quota", ErrInvalid)
	}
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`INSERT INTO invites (code_hash, user_name, quota_bytes, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code_hash) DO NOTHING`,
			inv.CodeHash, inv.UserName, inv.QuotaBytes, nanos(inv.ExpiresAt), nanos(time.Now()))
		if err != nil {
			return dbErr("create invite", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: invite", ErrExists)
		}
		return nil
	})
}

// ListInvites implements Accounts.
func (s *SQLite) ListInvites(ctx context.Context) ([]Invite, error) {
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.query(`SELECT code_hash, user_name, quota_bytes, expires_at, created_at, used_at, used_by
		FROM invites ORDER BY created_at, code_hash`)
	if err != nil {
		return nil, dbErr("list invites", err)
	}
	defer rows.Close()
	var out []Invite
	for rows.Next() {
		var inv Invite
		var expires, created int64
		var usedAt, usedBy sql.NullInt64
		if err := rows.Scan(&inv.CodeHash, &inv.UserName, &inv.QuotaBytes, &expires, &created, &usedAt, &usedBy); err != nil {
			return nil, dbErr("list invites", err)
		}
		inv.ExpiresAt, inv.CreatedAt = fromNanos(expires), fromNanos(created)
		if usedAt.Valid {
			inv.UsedAt, inv.UsedBy = fromNanos(usedAt.Int64), usedBy.Int64
		}
		out = append(out, inv)
	}
	return out, dbErr("list invites", rows.Err())
}

// DeleteInvite implements Accounts.
func (s *SQLite) DeleteInvite(ctx context.Context, codeHash []byte) error {
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`DELETE FROM invites WHERE code_hash = $1`, codeHash)
		if err != nil {
			return dbErr("delete invite", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: invite", ErrNotFound)
		}
		return nil
	})
}

// RedeemInvite implements Accounts.
func (s *SQLite) RedeemInvite(ctx context.Context, codeHash []byte, a NewAccount) (Account, error) {
	a.QuotaBytes = 0 // the invite's quota applies
	if err := checkNewAccount(a); err != nil {
		return Account{}, err
	}
	var acct Account
	err := s.update(ctx, func(d dbtx) error {
		now := time.Now()
		var userName string
		var quota, expires int64
		var usedAt sql.NullInt64
		err := d.queryRow(`SELECT user_name, quota_bytes, expires_at, used_at FROM invites WHERE code_hash = $1`,
			codeHash).Scan(&userName, &quota, &expires, &usedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: unknown code", ErrInviteInvalid)
		case err != nil:
			return dbErr("read invite", err)
		case usedAt.Valid:
			return fmt.Errorf("%w: already used", ErrInviteInvalid)
		case expires <= nanos(now):
			return fmt.Errorf("%w: expired", ErrInviteInvalid)
		case userName != "" && userName != a.Name:
			return fmt.Errorf("%w: issued for another name", ErrInviteInvalid)
		}
		a.QuotaBytes = quota
		if acct, err = createAccount(d, a, now); err != nil {
			return err
		}
		n, err := d.execN(`UPDATE invites SET used_at = $2, used_by = $3 WHERE code_hash = $1 AND used_at IS NULL`,
			codeHash, nanos(now), acct.ID)
		if err != nil {
			return dbErr("consume invite", err)
		}
		if n != 1 {
			return fmt.Errorf("%w: already used", ErrInviteInvalid)
		}
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	return acct, nil
}

// GetAccount implements Accounts.
func (s *SQLite) GetAccount(ctx context.Context, name string) (Account, error) {
	d, err := s.read(ctx)
	if err != nil {
		return Account{}, err
	}
	a, err := scanAccount(d.queryRow(`SELECT `+accountCols+` FROM accounts WHERE name = $1`, name))
	return a, dbErr("get account", notFound(err, "account %q", name))
}

// GetAccountByID implements Accounts.
func (s *SQLite) GetAccountByID(ctx context.Context, id int64) (Account, error) {
	d, err := s.read(ctx)
	if err != nil {
		return Account{}, err
	}
	a, err := scanAccount(d.queryRow(`SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
	return a, dbErr("get account", notFound(err, "account %d", id))
}

// ListAccounts implements Accounts.
func (s *SQLite) ListAccounts(ctx context.Context) ([]AccountSummary, error) {
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.query(`SELECT id, name, state, quota_bytes, used_bytes, created_at FROM accounts ORDER BY name`)
	if err != nil {
		return nil, dbErr("list accounts", err)
	}
	defer rows.Close()
	var out []AccountSummary
	for rows.Next() {
		var a AccountSummary
		var state string
		var created int64
		if err := rows.Scan(&a.ID, &a.Name, &state, &a.QuotaBytes, &a.UsedBytes, &created); err != nil {
			return nil, dbErr("list accounts", err)
		}
		a.State, a.CreatedAt = AccountState(state), fromNanos(created)
		out = append(out, a)
	}
	return out, dbErr("list accounts", rows.Err())
}

// SetAccountState implements Accounts.
func (s *SQLite) SetAccountState(ctx context.Context, name string, disabled bool) error {
	state := StateActive
	if disabled {
		state = StateDisabled
	}
	return s.update(ctx, func(d dbtx) error {
		var id int64
		err := d.queryRow(`UPDATE accounts SET state = $2 WHERE name = $1 RETURNING id`, name, string(state)).Scan(&id)
		if err != nil {
			return dbErr("set account state", notFound(err, "account %q", name))
		}
		if disabled {
			if _, err := d.exec(`DELETE FROM sessions WHERE account = $1`, id); err != nil {
				return dbErr("revoke sessions", err)
			}
		}
		return nil
	})
}

// UpdateLogin implements Accounts.
func (s *SQLite) UpdateLogin(ctx context.Context, account int64, l Login) error {
	if err := checkLogin(l); err != nil {
		return err
	}
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`UPDATE accounts SET auth_hash = $2, kdf = $3, wrapped_master = $4 WHERE id = $1`,
			account, l.AuthHash, l.KDF, l.WrappedMaster)
		if err != nil {
			return dbErr("update login", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: account %d", ErrNotFound, account)
		}
		return nil
	})
}

// SetQuota implements Accounts.
func (s *SQLite) SetQuota(ctx context.Context, name string, quotaBytes int64) error {
	if quotaBytes < 0 {
		return fmt.Errorf("%w: negative quota", ErrInvalid)
	}
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`UPDATE accounts SET quota_bytes = $2 WHERE name = $1`, name, quotaBytes)
		if err != nil {
			return dbErr("set quota", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: account %q", ErrNotFound, name)
		}
		return nil
	})
}
