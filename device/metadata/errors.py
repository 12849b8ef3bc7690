"""What can be wrong with a model file, one type each; all are one-line `UserError`s."""
from device.errors import UserError


class MetadataError(UserError):
    """A model file whose TFLite Metadata cannot be read or written.

    The message is kept to one line even when it quotes text from a hostile file.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class NotTFLiteError(MetadataError):
    """Not a TFLite model: no `TFL3` identifier, or a structure no interpreter would load."""


class TruncatedModelError(MetadataError):
    """An offset or length points past the end of the file: it was cut short (or corrupted)."""


class NoMetadataError(MetadataError):
    """The model carries no labels in metadata, and no labels file was named."""


class LabelsMismatchError(MetadataError):
    """The number of labels differs from the number of scores the model outputs."""


class MalformedMetadataError(MetadataError):
    """The model's TFLITE_METADATA buffer or its archive of associated files is broken."""


class UnsupportedModelError(MetadataError):
    """A valid model that is not ours to handle: not an NHWC image classifier, or one the writer cannot
    rewrite (buffers stored outside the FlatBuffer, a newer schema)."""
