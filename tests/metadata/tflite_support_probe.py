"""Run inside the tflite-support 0.4.4 venv: what Google's own readers make of a model.

    probe.py display MODEL             -> {"metadata": <MetadataDisplayer's JSON>, "files": {name: text},
                                            "computed_min_parser_version": str}
    probe.py classify MODEL PHOTO...   -> [{"label": str, "score": float}, ...]  (Task Library top 1)
    probe.py strip MODEL OUT           -> writes MODEL without its TFLITE_METADATA (a bare model)
    probe.py label MODEL LABELS OUT    -> writes MODEL with metadata by tflite-support's own writer
    probe.py model-maker MODEL OUT LABEL...  -> writes MODEL with the metadata Model Maker 0.4.3 writes,
                                                by tflite-support's own writers (an independent reference)

Prints one JSON document on stdout.
"""
import json
import sys


def display(model):
    from tflite_support import metadata
    from tensorflow_lite_support.metadata.cc.python import _pywrap_metadata_version

    displayer = metadata.MetadataDisplayer.with_model_file(model)
    with open(model, "rb") as file:
        buffer = metadata.get_metadata_buffer(file.read())
    return {
        "metadata": json.loads(displayer.get_metadata_json()),
        "files": {name: displayer.get_associated_file_buffer(name).decode()
                  for name in displayer.get_packed_associated_file_list()},
        "computed_min_parser_version": _pywrap_metadata_version.GetMinimumMetadataParserVersion(buffer),
    }


def classify(model, *photos):
    from tflite_support.task import core, processor, vision

    options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=model),
                                            classification_options=processor.ClassificationOptions(max_results=1))
    classifier = vision.ImageClassifier.create_from_options(options)
    results = []
    for photo in photos:
        top = classifier.classify(vision.TensorImage.create_from_file(photo)).classifications[0].categories[0]
        results.append({"label": top.category_name, "score": top.score})
    return results


def strip(model, out):
    import flatbuffers
    from tensorflow_lite_support.metadata import schema_py_generated as schema

    with open(model, "rb") as file:
        tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(file.read(), 0))
    for entry in tree.metadata:
        if entry.name.decode() == "TFLITE_METADATA":
            tree.buffers[entry.buffer].data = None
    tree.metadata = [entry for entry in tree.metadata if entry.name.decode() != "TFLITE_METADATA"]
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), b"TFL3")
    with open(out, "wb") as file:
        file.write(builder.Output())
    return {"written": out}


def label(model, labels, out):
    from tflite_support.metadata_writers import image_classifier, writer_utils

    writer = image_classifier.MetadataWriter.create_for_inference(writer_utils.load_file(model), [127.5], [127.5],
                                                                   [labels])
    writer_utils.save_file(writer.populate(), out)
    return {"written": out}


# What Model Maker 0.4.3 writes on a 224x224 uint8 flowers classifier, word for word (its metadata as
# tflite-support displays it is ../shared/models/model-maker-flowers-int8.metadata.json).
MODEL_MAKER_INPUT = ("Input image to be classified. The expected image is 224 x 224, with three channels (red, blue, "
                     "and green) per pixel. Each value in the tensor is a single byte between 0 and 255.")


def model_maker(model, out, *labels):
    import os
    import tempfile

    from tflite_support import metadata_schema_py_generated as metadata_fb, schema_py_generated as schema_fb
    from tflite_support.metadata_writers import image_classifier, metadata_info, writer_utils

    buffer = writer_utils.load_file(model)
    folder = tempfile.TemporaryDirectory()
    labels_file = os.path.join(folder.name, "labels.txt")   # its name is the associated file's name
    with open(labels_file, "w") as file:
        file.write("\n".join(labels))
    general = metadata_info.GeneralMd(
        name="efficientnet_lite0", version="v1", author="TensorFlow Lite Model Maker",
        description=f"Identify the most prominent object in the image from a set of {len(labels)} categories.",
        licenses="Apache License. Version 2.0 http://www.apache.org/licenses/LICENSE-2.0.")
    image = metadata_info.InputImageTensorMd(
        name="image", description=MODEL_MAKER_INPUT, norm_mean=[0.0], norm_std=[255.0],
        color_space_type=metadata_fb.ColorSpaceType.RGB, tensor_type=writer_utils.get_input_tensor_types(buffer)[0])
    # Model Maker describes the probabilities (stats 0..1) even when the output tensor is quantized, and
    # its labels file says "objects" where tflite-support's LabelFileMd says "categories".
    probability = metadata_info.ClassificationTensorMd(
        name="probability", description=f"Probabilities of the {len(labels)} labels respectively.",
        tensor_type=schema_fb.TensorType.FLOAT32,
        label_files=[metadata_info.AssociatedFileMd(
            labels_file, "Labels for objects that the model can recognize.",
            metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS)]).create_metadata()
    # Model Maker names the FeatureProperties type without its (empty) table; tflite-support adds the table.
    probability.content.contentProperties = None
    writer = image_classifier.MetadataWriter.create_from_metadata(
        buffer, general.create_metadata(), [image.create_metadata()], [probability], [labels_file])
    writer_utils.save_file(writer.populate(), out)
    folder.cleanup()
    return {"written": out}


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    print(json.dumps({"display": display, "classify": classify, "strip": strip, "label": label,
                      "model-maker": model_maker}[command](*arguments)))
