package httpapi

import (
	"encoding/json"
	"io"
	"strconv"

	"dualledger/internal/jsonlimit"
	"dualledger/internal/ledger"
)

// Defaults of Config.MaxMetadataBytes and Config.MaxMetadataDepth. Metadata is the client's
// free-form JSON object on entries and accounts: it is stored in every entry row (and hashed
// into the chain), echoed in every answer and statement, so it is kept small and shallow.
const (
	DefaultMaxMetadataBytes = 16 << 10 // 16 KiB, the metadata JSON as received
	DefaultMaxMetadataDepth = 8        // levels of objects and arrays, the metadata object itself included

	// MaxMetadataDepthLimit is the deepest Config.MaxMetadataDepth may go: the metadata of an
	// entry sits one level inside the body, whose nesting the decoder caps at maxJSONDepth.
	MaxMetadataDepthLimit = maxJSONDepth - 1

	// MaxMetadataBytesLimit is the largest Config.MaxMetadataBytes may be: the posting function
	// refuses an entry whose metadata takes more than 1 MiB stored, whoever calls it.
	MaxMetadataBytesLimit = 1 << 20
)

// metadataLimits caps the metadata of one request (the server's Config, or the defaults).
type metadataLimits struct {
	maxBytes int // the metadata JSON as received
	maxDepth int // nesting of objects and arrays, the metadata object itself counting 1
}

func defaultMetadataLimits() metadataLimits {
	return metadataLimits{maxBytes: DefaultMaxMetadataBytes, maxDepth: DefaultMaxMetadataDepth}
}

// metadataLimits are the server's caps.
func (s *Server) metadataLimits() metadataLimits {
	return metadataLimits{maxBytes: s.cfg.MaxMetadataBytes, maxDepth: s.cfg.MaxMetadataDepth}
}

// decodeEntry is DecodeEntry with the server's metadata caps.
func (s *Server) decodeEntry(r io.Reader) (ledger.EntryInput, error) {
	data, err := readBody(r)
	if err != nil {
		return ledger.EntryInput{}, err
	}
	return decodeEntryLimits(data, s.metadataLimits())
}

// decodeBatch is the package's decodeBatch with the server's batch size and metadata caps.
func (s *Server) decodeBatch(data []byte) (bool, []ledger.EntryInput, error) {
	return decodeBatchLimits(data, s.cfg.MaxBatch, s.metadataLimits())
}

// decodeJSON is the package's decodeJSON with the server's metadata caps for the bodies that
// carry metadata (account creation).
func (s *Server) decodeJSON(r io.Reader, v any) error {
	return decodeJSONLimits(r, v, s.metadataLimits())
}

// check refuses metadata (raw, as received) over the caps: invalid_request naming the field,
// the limit and what was sent.
func (l metadataLimits) check(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > l.maxBytes {
		limit := strconv.Itoa(l.maxBytes)
		if h := ByteSize(l.maxBytes).String(); h != limit {
			limit += " (" + h + ")"
		}
		return ledger.Errorf(ledger.CodeInvalidRequest, "metadata is %d bytes of JSON: at most %s are allowed", len(raw), limit).
			WithDetails(map[string]any{"field": "metadata", "max_bytes": l.maxBytes, "bytes": len(raw)})
	}
	if d := jsonlimit.Depth(raw); d > l.maxDepth {
		return ledger.Errorf(ledger.CodeInvalidRequest, "metadata is nested %d levels deep: at most %d are allowed", d, l.maxDepth).
			WithDetails(map[string]any{"field": "metadata", "max_depth": l.maxDepth, "depth": d})
	}
	return nil
}
