"""Run inside the tflite-support 0.4.4 venv: what Google's own readers make of a model.

    probe.py display MODEL             -> {"metadata": <MetadataDisplayer's JSON>, "files": {name: text},
                                            "computed_min_parser_version": str}
    probe.py classify MODEL PHOTO...   -> [{"label": str, "score": float}, ...]  (Task Library top 1)
    probe.py strip MODEL OUT           -> writes MODEL without its TFLITE_METADATA (a bare model)
    probe.py label MODEL LABELS OUT    -> writes MODEL with metadata by tflite-support's own writer

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


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    print(json.dumps({"display": display, "classify": classify, "strip": strip, "label": label}[command](*arguments)))
