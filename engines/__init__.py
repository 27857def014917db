"""The model as deployed: shared by training and by the streaming service.

Everything that must be identical when a model is trained and when it serves lives here:
the model definition (:mod:`.spec`, :mod:`.model`), face detection and cropping
(:mod:`.faces`, :mod:`.crop`), the mask-to-score rule (:mod:`.scoring`), the bundle
format (:mod:`.bundle`) and the runtimes that execute it (:mod:`.runtimes`).

Submodules are imported on demand so that ``import fakewatch.engines`` stays cheap and
never pulls torch into a process that only runs ONNX Runtime or OpenVINO.
"""
