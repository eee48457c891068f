"""Importers that convert public datasets (or any image folder) into the canonical nnU-Net layout."""

from diffuse_uda.data.importers.abdominal import import_abdominal
from diffuse_uda.data.importers.folder import import_folder
from diffuse_uda.data.importers.mscmrseg import import_mscmrseg
from diffuse_uda.data.importers.polyp import import_polyp

__all__ = ["import_abdominal", "import_folder", "import_mscmrseg", "import_polyp"]
