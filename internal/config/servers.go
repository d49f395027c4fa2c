package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Server names one of the servers a configuration connects to, by its URL key.
type Server string

// The servers a command may or may not use.
const (
	FlagDatabaseServer  Server = "flag_database.url"
	StateDatabaseServer Server = "state_database.url"
	BrokerServer        Server = "broker.url"
	CacheServer         Server = "cache.url"
)

var servers = []Server{FlagDatabaseServer, StateDatabaseServer, BrokerServer, CacheServer}

// LoadFor is Load for a tool that connects only to the servers it names: a missing URL
// of any other is no problem, while every other rule still applies. The state
// database's URL falls back to the flag database's, as in Load.
func LoadFor(path string, environ []string, uses ...Server) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	return ParseFor(f, environ, uses...)
}

// ParseFor is LoadFor for a reader.
func ParseFor(r io.Reader, environ []string, uses ...Server) (Config, error) {
	cfg, err := decode(r, environ)
	if err != nil {
		return Config{}, err
	}
	err = cfg.Validate()
	var p *Problems
	if !errors.As(err, &p) {
		return cfg, err
	}
	kept := p.Errs[:0:0]
	for _, e := range p.Errs {
		var m *MissingError
		if errors.As(e, &m) && slices.Contains(servers, Server(m.Field)) && !slices.Contains(uses, Server(m.Field)) {
			continue
		}
		kept = append(kept, e)
	}
	// The state database is optional in the file because it falls back to the flag
	// database; a tool that uses it needs one of the two.
	if slices.Contains(uses, StateDatabaseServer) && cfg.StateDatabase.URL == "" && !slices.ContainsFunc(kept, isMissing(FlagDatabaseServer)) {
		kept = append(kept, &MissingError{Field: string(StateDatabaseServer)})
	}
	if len(kept) == 0 {
		return cfg, nil
	}
	return Config{}, &Problems{Errs: kept}
}

func isMissing(s Server) func(error) bool {
	return func(err error) bool {
		var m *MissingError
		return errors.As(err, &m) && m.Field == string(s)
	}
}
