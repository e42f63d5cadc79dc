package rpm

import "strconv"

// IgnoredTag is a main-header tag that the skyline-rpm-v1 digest leaves
// out, with the reason. docs/rpm-digest.md lists the same tags.
type IgnoredTag struct {
	Tag    uint32
	Name   string
	Reason string
}

// IgnoredTags is the complete list of main-header tags the skyline-rpm-v1
// digest leaves out. Changing it requires a new DigestVersion.
var IgnoredTags = []IgnoredTag{
	{63, "HEADERIMMUTABLE", "region trailer: a copy of the index layout (entry count as a negative offset), not content; every entry it covers is hashed on its own"},
	{1006, "BUILDTIME", "the time of the build; differs between rebuilds unless SOURCE_DATE_EPOCH is honoured, installs nothing"},
	{1007, "BUILDHOST", "the builder's host name; differs between builders, installs nothing"},
	{1094, "COOKIE", "rpmbuild writes the real host name and the wall-clock time here, whatever SOURCE_DATE_EPOCH says; installs nothing"},
}

func ignored(tag uint32) bool {
	for _, t := range IgnoredTags {
		if t.Tag == tag {
			return true
		}
	}
	return false
}

// tagNames names the tags a report is likely to mention (rpm's
// include/rpm/rpmtag.h); others are shown by number.
var tagNames = map[uint32]string{
	61: "HEADERIMAGE", 62: "HEADERSIGNATURES", 63: "HEADERIMMUTABLE", 64: "HEADERREGIONS",
	100: "HEADERI18NTABLE", 1000: "NAME", 1001: "VERSION", 1002: "RELEASE", 1003: "EPOCH",
	1004: "SUMMARY", 1005: "DESCRIPTION", 1006: "BUILDTIME", 1007: "BUILDHOST", 1009: "SIZE",
	1010: "DISTRIBUTION", 1011: "VENDOR", 1014: "LICENSE", 1015: "PACKAGER", 1016: "GROUP",
	1020: "URL", 1021: "OS", 1022: "ARCH", 1023: "PREIN", 1024: "POSTIN", 1025: "PREUN",
	1026: "POSTUN", 1028: "FILESIZES", 1029: "FILESTATES", 1030: "FILEMODES", 1033: "FILERDEVS",
	1034: "FILEMTIMES", 1035: "FILEDIGESTS", 1036: "FILELINKTOS", 1037: "FILEFLAGS",
	1039: "FILEUSERNAME", 1040: "FILEGROUPNAME", 1044: "SOURCERPM", 1045: "FILEVERIFYFLAGS",
	1046: "ARCHIVESIZE", 1047: "PROVIDENAME", 1048: "REQUIREFLAGS", 1049: "REQUIRENAME",
	1050: "REQUIREVERSION", 1053: "CONFLICTFLAGS", 1054: "CONFLICTNAME", 1055: "CONFLICTVERSION",
	1064: "RPMVERSION", 1065: "TRIGGERSCRIPTS", 1066: "TRIGGERNAME", 1067: "TRIGGERVERSION",
	1068: "TRIGGERFLAGS", 1069: "TRIGGERINDEX", 1079: "VERIFYSCRIPT", 1080: "CHANGELOGTIME",
	1081: "CHANGELOGNAME", 1082: "CHANGELOGTEXT", 1085: "PREINPROG", 1086: "POSTINPROG",
	1087: "PREUNPROG", 1088: "POSTUNPROG", 1089: "BUILDARCHS", 1090: "OBSOLETENAME",
	1091: "VERIFYSCRIPTPROG", 1092: "TRIGGERSCRIPTPROG", 1094: "COOKIE", 1095: "FILEDEVICES",
	1096: "FILEINODES", 1097: "FILELANGS", 1098: "PREFIXES", 1106: "SOURCEPACKAGE",
	1112: "PROVIDEFLAGS", 1113: "PROVIDEVERSION", 1114: "OBSOLETEFLAGS", 1115: "OBSOLETEVERSION",
	1116: "DIRINDEXES", 1117: "BASENAMES", 1118: "DIRNAMES", 1122: "OPTFLAGS", 1123: "DISTURL",
	1124: "PAYLOADFORMAT", 1125: "PAYLOADCOMPRESSOR", 1126: "PAYLOADFLAGS", 1132: "PLATFORM",
	1140: "FILECOLORS", 1141: "FILECLASS", 1142: "CLASSDICT", 1143: "FILEDEPENDSX",
	1144: "FILEDEPENDSN", 1145: "DEPENDSDICT", 1146: "SOURCEPKGID", 1151: "PRETRANS",
	1152: "POSTTRANS", 1153: "PRETRANSPROG", 1154: "POSTTRANSPROG", 1155: "DISTTAG",
	5008: "LONGFILESIZES", 5009: "LONGSIZE", 5010: "FILECAPS", 5011: "FILEDIGESTALGO",
	5012: "BUGURL", 5020: "PREINFLAGS", 5021: "POSTINFLAGS", 5022: "PREUNFLAGS",
	5023: "POSTUNFLAGS", 5024: "PRETRANSFLAGS", 5025: "POSTTRANSFLAGS", 5034: "VCS",
	5046: "RECOMMENDNAME", 5047: "RECOMMENDVERSION", 5048: "RECOMMENDFLAGS",
	5049: "SUGGESTNAME", 5050: "SUGGESTVERSION", 5051: "SUGGESTFLAGS", 5052: "SUPPLEMENTNAME",
	5053: "SUPPLEMENTVERSION", 5054: "SUPPLEMENTFLAGS", 5055: "ENHANCENAME",
	5056: "ENHANCEVERSION", 5057: "ENHANCEFLAGS", 5062: "ENCODING", 5066: "FILETRIGGERSCRIPTS",
	5067: "FILETRIGGERSCRIPTPROG", 5068: "FILETRIGGERSCRIPTFLAGS", 5069: "FILETRIGGERNAME",
	5070: "FILETRIGGERINDEX", 5071: "FILETRIGGERVERSION", 5092: "PAYLOADDIGEST",
	5093: "PAYLOADDIGESTALGO", 5096: "MODULARITYLABEL", 5097: "PAYLOADDIGESTALT",
}

// tagName returns rpm's name for a main-header tag, or "tag N".
func tagName(tag uint32) string {
	if n, ok := tagNames[tag]; ok {
		return n
	}
	return "tag " + strconv.FormatUint(uint64(tag), 10)
}
