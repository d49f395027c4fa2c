package rebuild

import (
	"fmt"
	"slices"
	"strings"
)

// Contract is the version of PostHog's cache contract a build writes: which flags each
// payload holds, which fields a flag carries, and the top-level shape. PostHog changed
// all three during 2026; a drop-in writer must match the readers it serves.
type Contract string

// The contract versions flagwarden writes.
const (
	// Contract202602 is PostHog as of February 2026 (the incident): flags.json is
	// {"flags": [...]} with the active flags only; flags carry has_encrypted_payloads
	// and evaluation_tags; legacy rollout_percentage rows are up-converted by
	// get_filters(); definitions hold flags, group_type_mapping and cohorts.
	Contract202602 Contract = "2026-02"
	// Contract202609 is PostHog's newest contract: flags.json adds evaluation_metadata
	// (dependency stages) and the referenced cohorts, static ones included, and keeps
	// inactive flags; encrypted-payload flags are left out of both payloads; flags carry
	// evaluation_contexts, bucketing_identifier and has_experiment; definitions add
	// minimal_flag_called_events and property_matching_version.
	Contract202609 Contract = "2026-09"
)

// NewestContract is the default.
const NewestContract = Contract202609

// Contracts lists the known versions, oldest first.
func Contracts() []Contract { return []Contract{Contract202602, Contract202609} }

// ParseContract checks a configured version; "" means the newest.
func ParseContract(s string) (Contract, error) {
	if s == "" {
		return NewestContract, nil
	}
	c := Contract(s)
	if !slices.Contains(Contracts(), c) {
		names := make([]string, 0, 2)
		for _, k := range Contracts() {
			names = append(names, string(k))
		}
		return "", fmt.Errorf("unknown PostHog contract version %q (known: %s)", s, strings.Join(names, ", "))
	}
	return c, nil
}

// flagsWrapped: flags.json carries evaluation_metadata and cohorts besides flags.
func (c Contract) flagsWrapped() bool { return c != Contract202602 }

// flagsActiveOnly: flags.json holds active flags only (else inactive ones too, so that
// dependencies on them resolve).
func (c Contract) flagsActiveOnly() bool { return c == Contract202602 }

// excludeEncrypted: flags with encrypted payloads are left out of flags.json and the
// definitions (the newest writer excludes has_encrypted_payloads; the February one only
// left remote-configuration flags with encrypted payloads out of the definitions).
func (c Contract) excludeEncryptedEverywhere() bool { return c != Contract202602 }

// idFilter selects the flags flags.json's evaluation_metadata lists.
func (c Contract) idFilter() IDFilter {
	return IDFilter{ActiveOnly: c.flagsActiveOnly(), ExcludeEncrypted: c.excludeEncryptedEverywhere()}
}

// upConvertLegacy: get_filters() turns a row without "groups" into one condition group
// with the legacy rollout_percentage column (removed from get_filters() in March 2026).
func (c Contract) upConvertLegacy() bool { return c == Contract202602 }

// teamSettings: definitions carry minimal_flag_called_events and
// property_matching_version.
func (c Contract) teamSettings() bool { return c != Contract202602 }

// flagField is one top-level field of a serialized flag.
type flagField int

const (
	fActive flagField = iota
	fBucketingIdentifier
	fDeleted
	fEnsureExperienceContinuity
	fEvaluationContexts
	fEvaluationRuntime
	fEvaluationTags
	fFilters
	fHasEncryptedPayloads
	fHasExperiment
	fID
	fKey
	fName
	fTeamID
	fVersion
)

var flagFieldNames = map[flagField]string{
	fActive: "active", fBucketingIdentifier: "bucketing_identifier", fDeleted: "deleted",
	fEnsureExperienceContinuity: "ensure_experience_continuity", fEvaluationContexts: "evaluation_contexts",
	fEvaluationRuntime: "evaluation_runtime", fEvaluationTags: "evaluation_tags", fFilters: "filters",
	fHasEncryptedPayloads: "has_encrypted_payloads", fHasExperiment: "has_experiment", fID: "id", fKey: "key",
	fName: "name", fTeamID: "team_id", fVersion: "version",
}

// flagFields are the serializer's fields (MinimalFeatureFlagSerializer in February,
// EvaluationFeatureFlagSerializer later) in the order sort_keys prints them.
func (c Contract) flagFields() []flagField {
	var fs []flagField
	if c == Contract202602 {
		fs = []flagField{fID, fTeamID, fName, fKey, fFilters, fDeleted, fActive, fEnsureExperienceContinuity,
			fHasEncryptedPayloads, fVersion, fEvaluationRuntime, fEvaluationTags}
	} else {
		fs = []flagField{fID, fTeamID, fName, fKey, fFilters, fDeleted, fActive, fEnsureExperienceContinuity,
			fVersion, fEvaluationRuntime, fBucketingIdentifier, fEvaluationContexts, fHasExperiment}
	}
	slices.SortFunc(fs, func(a, b flagField) int { return strings.Compare(flagFieldNames[a], flagFieldNames[b]) })
	return fs
}
