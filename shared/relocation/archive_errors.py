"""The errors of reading and writing exports as files: plain, gzip, or encrypted archives
(:mod:`shared.relocation.archive`). Each message names the file and, where one is at fault, the member.
Bad input exits with 3; a missing or unusable key, as configuration, with 2."""

from __future__ import annotations

from shared.errors import SharedError


class ArchiveError(SharedError):
    """Root of the errors of exports as files: the input cannot be read as an export, or an archive
    cannot be written. Each message names the file and, where one is at fault, the member."""

    exit_code = 3


class InputUnreadable(ArchiveError):
    """The file cannot be opened or read."""

    exit_code = 2


class UnrecognisedInput(ArchiveError):
    """The content is neither a JSON list, a gzip, nor a tar."""


class DecryptorRequired(ArchiveError):
    """An encrypted archive was given without a key to decrypt it."""

    exit_code = 2


class KeyConfigError(ArchiveError):
    """A key file or KMS configuration given to decrypt or encrypt is unusable."""

    exit_code = 2


class KmsUnavailable(KeyConfigError):
    """The Google Cloud KMS client is not installed."""


class KmsFailed(KeyConfigError):
    """Cloud KMS refused or failed the call for a reason other than the key."""


class UnwrapFailed(ArchiveError):
    """Raised by a :class:`Decryptor` whose key cannot unwrap the data key (message: why, without the
    archive's name); :func:`plain_export` turns it into :class:`WrongKey`."""


class WrongKey(ArchiveError):
    """The archive was encrypted for another public key."""


class DamagedArchive(ArchiveError):
    """The archive's structure or content is damaged."""


class ArchiveTruncated(DamagedArchive):
    """The file ends before the data its headers announce."""


class PayloadInvalid(DamagedArchive):
    """The data key does not decrypt ``export.json``: damaged or tampered with."""


class DamagedGzip(DamagedArchive):
    """The gzip stream is corrupt or cut short."""


class UnsafeMember(ArchiveError):
    """A member's name is a path (traversal, absolute, nested)."""


class NotARegularFile(ArchiveError):
    """A member is a link, device, directory, FIFO or sparse file."""


class UnexpectedMember(ArchiveError):
    """A member other than the three expected ones."""


class DuplicateMember(ArchiveError):
    """An expected member appears more than once."""


class MissingMember(ArchiveError):
    """An expected member is absent."""


class MemberTooLarge(ArchiveError):
    """A member is larger than its limit."""


class PayloadTooLarge(ArchiveError):
    """The decrypted or decompressed export is larger than the limit."""


class PlaintextChanged(ArchiveError):
    """The file being encrypted changed while it was read."""


class ArchiveWriteFailed(ArchiveError):
    """The archive cannot be written (its directory, the disk)."""

    exit_code = 2
