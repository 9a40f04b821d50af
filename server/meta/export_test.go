package meta

import "context"

// PragmasForTest returns a pragma's value on the writer's connection and on
// a reader connection, so tests can check the DSN reached both pools.
func (s *SQLite) PragmasForTest(ctx context.Context, pragma string) (writer, reader string, err error) {
	err = s.update(ctx, func(d dbtx) error {
		return d.queryRow("PRAGMA " + pragma).Scan(&writer)
	})
	if err != nil {
		return "", "", err
	}
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&reader); err != nil {
		return "", "", err
	}
	return writer, reader, nil
}
